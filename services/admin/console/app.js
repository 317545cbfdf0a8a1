// The Aloft console: plain JavaScript, no build step. Every call goes through a client generated at start
// from /api/v1/openapi.json (operation ids and their parameters), so the console can only do what the
// REST API allows, and the API refuses what it refuses, with its own messages.
//
// Over 600 lines: one script, so the console needs no build step or module loader and admin serves it as one
// embedded file; its parts (the client, login, each page) are the sections marked `// ----`.

const main = document.getElementById("main");

// ---- the API client, generated from the OpenAPI document ----
let operations = null;

async function loadApi() {
  const response = await fetch("/api/v1/openapi.json");
  const document_ = await response.json();
  operations = {};
  for (const [path, methods] of Object.entries(document_.paths)) {
    for (const [method, operation] of Object.entries(methods)) {
      operations[operation.operationId] = { method, path, parameters: operation.parameters || [] };
    }
  }
}

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function operationUrl(id, params) {
  const operation = operations[id];
  if (!operation) throw new Error(`the API has no operation ${id}`);
  let path = operation.path;
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value === undefined || value === null || value === "") continue;
    const declared = operation.parameters.find((p) => p.name === name ||
      (p.name.endsWith(".{key}") && name.startsWith(p.name.slice(0, -5))));
    if (!declared) throw new Error(`${id} takes no parameter ${name}`);
    if (declared.in === "path") path = path.replace(`{${name}}`, encodeURIComponent(value));
    else for (const v of [].concat(value)) query.append(name, v);
  }
  const text = query.toString();
  return { method: operation.method.toUpperCase(), url: text ? `${path}?${text}` : path };
}

// ---- login: OIDC authorization code + PKCE when admin authenticates callers ----
// The access token lives in this tab's sessionStorage only, and goes out as a bearer header.
const TOKEN_KEY = "aloft.token";
let authInfo = null;

function authHeaders(extra = {}) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { ...extra, authorization: `Bearer ${token}` } : extra;
}

function base64Url(bytes) {
  return btoa(String.fromCharCode(...new Uint8Array(bytes))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

async function discovery() {
  const response = await fetch(`${authInfo.issuer.replace(/\/+$/, "")}/.well-known/openid-configuration`);
  if (!response.ok) throw new Error(`the identity provider's discovery document: ${response.status}`);
  return response.json();
}

const redirectUri = () => `${location.origin}/console/callback`;

async function startLogin() {
  const verifier = base64Url(crypto.getRandomValues(new Uint8Array(48)));
  const state = base64Url(crypto.getRandomValues(new Uint8Array(16)));
  const challenge = base64Url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
  sessionStorage.setItem("aloft.login", JSON.stringify({ verifier, state, back: location.pathname + location.search }));
  const { authorization_endpoint } = await discovery();
  const query = new URLSearchParams({ response_type: "code", client_id: authInfo.client_id, redirect_uri: redirectUri(),
    scope: "openid profile email", code_challenge: challenge, code_challenge_method: "S256", state });
  location.assign(`${authorization_endpoint}?${query}`);
}

// The identity provider sent the browser back with a code: trade it (and the verifier) for a token.
async function finishLogin() {
  const params = new URLSearchParams(location.search);
  const pending = JSON.parse(sessionStorage.getItem("aloft.login") || "null");
  sessionStorage.removeItem("aloft.login");
  if (!pending || params.get("state") !== pending.state) throw new Error("this login did not start here; log in again");
  if (params.get("error")) throw new Error(`the identity provider said: ${params.get("error")}`);
  const { token_endpoint } = await discovery();
  const response = await fetch(token_endpoint, { method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ grant_type: "authorization_code", code: params.get("code"), code_verifier: pending.verifier,
      redirect_uri: redirectUri(), client_id: authInfo.client_id }) });
  const tokens = await response.json();
  if (!response.ok || !tokens.access_token) throw new Error(`the login was refused: ${tokens.error || response.status}`);
  sessionStorage.setItem(TOKEN_KEY, tokens.access_token);
  history.replaceState(null, "", pending.back.startsWith("/console") ? pending.back : "/console/");
}

function loginPage(message) {
  document.title = "Log in · Aloft";
  main.replaceChildren(h("h1", {}, "Log in"),
    message ? h("p", { class: "error", role: "alert" }, message) : "",
    h("p", {}, "This Aloft asks who you are. You will be sent to your identity provider and back."),
    h("button", { type: "button", onclick: () => startLogin().catch((e) => loginPage(e.message)) }, "Log in"));
}

async function showUser() {
  const who = document.getElementById("user");
  if (!authInfo?.enabled) { who.textContent = ""; return; }
  const me = await call("WhoAmI");
  who.replaceChildren(`${me.principal.name || me.principal.subject} · `,
    h("a", { href: "#", onclick: (event) => { event.preventDefault(); sessionStorage.removeItem(TOKEN_KEY); route(); } }, "Log out"));
}

async function call(id, params = {}, body = undefined) {
  const { method, url } = operationUrl(id, params);
  const response = await fetch(url, {
    method,
    headers: authHeaders(body ? { "content-type": "application/json" } : {}),
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await response.text();
  let json = null;
  try { json = text ? JSON.parse(text) : {}; } catch { json = null; }
  if (!response.ok) {
    throw new ApiError(response.status, json?.code || "ERROR", json?.message || text || response.statusText);
  }
  return json ?? text;
}

async function callText(id, params = {}) {
  const { url } = operationUrl(id, params);
  const response = await fetch(url, { headers: authHeaders() });
  const text = await response.text();
  if (!response.ok) {
    let message = text;
    try { message = JSON.parse(text).message; } catch { /* the text is the message */ }
    throw new ApiError(response.status, "ERROR", message);
  }
  return text;
}

// Server-sent events read with fetch (an EventSource cannot send the bearer header): `history` and `end`
// events to their listeners, until closed.
function watchEvents(url) {
  const listeners = {};
  const controller = new AbortController();
  (async () => {
    const response = await fetch(url, { headers: authHeaders({ accept: "text/event-stream" }), signal: controller.signal });
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const frame = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const kind = /^event: (.*)$/m.exec(frame)?.[1] || "message";
        for (const listener of listeners[kind] || []) listener(frame);
      }
    }
  })().catch(() => {});
  return {
    addEventListener(kind, listener) { (listeners[kind] ||= []).push(listener); },
    close() { controller.abort(); },
  };
}

// ---- helpers ----
// Who did something, as the audit trail records it.
function who(principal) {
  const name = principal.name && principal.name !== principal.subject ? `${principal.name} ` : "";
  return `${name}(${principal.subject}, ${principal.via})`;
}

function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) element.addEventListener(key.slice(2), value);
    else if (key === "text") element.textContent = value;
    else element.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

const time = (ms) => (Number(ms) > 0 ? new Date(Number(ms)).toLocaleString() : "—");
function duration(start, end) {
  const a = Number(start), b = Number(end) || Date.now();
  if (!(a > 0)) return "—";
  const s = Math.max(0, (b - a) / 1000);
  return s < 60 ? `${s.toFixed(1)} s` : `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}
const phaseLabel = (p) => String(p || "").replace(/^NODE_/, "");
const phaseBadge = (p) => h("span", { class: `phase ${p}` }, phaseLabel(p));

function literalText(literal) {
  if (!literal) return "";
  if ("integer" in literal) return String(literal.integer);
  if ("float" in literal) return String(literal.float);
  if ("string" in literal) return literal.string;
  if ("boolean" in literal) return String(literal.boolean);
  if ("datetime" in literal) return literal.datetime;
  if ("duration_millis" in literal) return `${literal.duration_millis} ms`;
  if ("blob" in literal) return literal.blob.uri;
  if ("list" in literal) return `[${(literal.list.values || []).map(literalText).join(", ")}]`;
  if ("map" in literal) return `{${Object.entries(literal.map.values || {}).map(([k, v]) => `${k}: ${literalText(v)}`).join(", ")}}`;
  if ("struct_json" in literal) return literal.struct_json;
  if ("none" in literal) return "none";
  if ("offloaded" in literal) return `(offloaded to the blob store, ${literal.offloaded.size} bytes)`;
  return JSON.stringify(literal);
}

/// A long value (a list of 10,000 items) is cut at 300 characters, saying how much was left out.
function shortened(text) {
  return text.length <= 300 ? text : `${text.slice(0, 300)}… (${text.length - 300} more characters)`;
}

/// Named values as a table: a struct as a tree of its fields, a blob with a download button when `source`
/// says whose values they are ({ id, node_id?, from_inputs? }), anything else as text.
function valuesTable(map, caption, source = null) {
  const entries = Object.entries(map?.values || {});
  if (!entries.length) return h("p", { class: "muted" }, `No ${caption.toLowerCase()}.`);
  return h("table", { "aria-label": caption },
    h("tbody", {}, entries.map(([name, value]) => h("tr", {},
      h("th", { scope: "row" }, name),
      h("td", { "data-output": name, class: "value" }, valueCell(name, value, source))))));
}

function valueCell(name, value, source) {
  if (value && "struct_json" in value) {
    try { return jsonTree(JSON.parse(value.struct_json)); } catch { return value.struct_json; }
  }
  if (value && "offloaded" in value && source) {
    return [literalText(value), " ", h("button", { type: "button", "data-download": name,
      onclick: (event) => download(event.target, { ...source.id, node_id: source.node_id, from_inputs: source.from_inputs ? "true" : undefined }, name) }, "Download")];
  }
  if (value && "blob" in value && source && !value.blob.uri.endsWith("/")) {
    return [shortened(value.blob.uri), " ", h("button", { type: "button", "data-download": name,
      onclick: (event) => download(event.target, { ...source.id, node_id: source.node_id, from_inputs: source.from_inputs ? "true" : undefined }, name) }, "Download")];
  }
  return shortened(literalText(value));
}

/// A JSON value as a tree: objects and arrays open and close, leaves as JSON text.
function jsonTree(value, label = null) {
  const named = (text) => (label === null ? text : [h("span", { class: "muted" }, `${label}: `), text]);
  if (value === null || typeof value !== "object") return h("div", { class: "leaf" }, named(JSON.stringify(value)));
  const entries = Array.isArray(value) ? value.map((v, i) => [i, v]) : Object.entries(value);
  const summary = Array.isArray(value) ? `[${entries.length} items]` : `{${entries.length} fields}`;
  return h("details", { class: "json", open: entries.length <= 8 },
    h("summary", {}, named(summary)), entries.map(([key, v]) => jsonTree(v, key)));
}

/// Streams a blob through the API (with the caller's credential) and hands it to the browser as a file.
/// The route's path names the execution `name` too, so the value's `name` goes into the query by hand.
async function download(button, params, name) {
  const path = operationUrl("DownloadData", params).url;
  const url = `${path}${path.includes("?") ? "&" : "?"}name=${encodeURIComponent(name)}`;
  button.disabled = true;
  try {
    const response = await fetch(url, { headers: authHeaders() });
    if (!response.ok) throw new Error((await response.text()) || response.statusText);
    const link = h("a", { href: URL.createObjectURL(await response.blob()), download: name });
    document.body.append(link);
    link.click();
    link.remove();
  } catch (error) {
    button.after(h("span", { class: "error", role: "alert" }, ` ${error.message}`));
  } finally {
    button.disabled = false;
  }
}

function tenant() {
  const params = new URLSearchParams(location.search);
  return {
    project: params.get("project") || localStorage.getItem("aloft.project") || "default",
    domain: params.get("domain") || localStorage.getItem("aloft.domain") || "development",
  };
}

function navigate(url) {
  history.pushState(null, "", url);
  route();
}

document.addEventListener("click", (event) => {
  const link = event.target.closest("a");
  if (!link || link.target || event.ctrlKey || event.metaKey || !link.getAttribute("href")?.startsWith("/console")) return;
  event.preventDefault();
  navigate(link.getAttribute("href"));
});
window.addEventListener("popstate", () => route());

let stopPage = () => {};

// ---- pages ----
async function route() {
  stopPage();
  stopPage = () => {};
  if (!operations) await loadApi();
  if (!authInfo) authInfo = await call("GetAuthInfo");
  if (authInfo.enabled) {
    try {
      if (location.pathname === "/console/callback") await finishLogin();
    } catch (error) { loginPage(error.message); return; }
    if (!sessionStorage.getItem(TOKEN_KEY)) { loginPage(); return; }
    try { await showUser(); } catch (error) {
      if (error instanceof ApiError && error.status === 401) { sessionStorage.removeItem(TOKEN_KEY); loginPage(error.message); return; }
      throw error;
    }
  }
  const path = location.pathname.replace(/\/+$/, "");
  const parts = path.split("/").slice(2).map(decodeURIComponent);
  const { project, domain } = tenant();
  document.getElementById("tenant").textContent = `${project} / ${domain}`;
  try {
    if (parts.length === 0 || parts[0] === "executions" && parts.length === 1) await executionsPage(project, domain);
    else if (parts[0] === "executions" && parts.length === 4) await executionPage(parts[1], parts[2], parts[3]);
    else if (parts[0] === "projects") await projectsPage();
    else if (parts[0] === "cache") await cachePage(project, domain);
    else if (parts[0] === "workflows") await workflowsPage(project, domain);
    else if (parts[0] === "entities" && parts.length === 3) await entityPage(project, domain, parts[1], parts[2]);
    else if (parts[0] === "deliveries") await deliveriesPage(project, domain);
    else if (parts[0] === "tenants") await tenantsPage();
    else if (parts[0] === "launch" && parts.length === 4) await launchPage(parts[1], parts[2], parts[3]);
    else notFound(`There is no console page ${location.pathname}.`);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) notFound(error.message);
    else if (error instanceof ApiError && error.status === 401) { sessionStorage.removeItem(TOKEN_KEY); loginPage(error.message); }
    else main.replaceChildren(h("h1", {}, "Something went wrong"), h("p", { class: "error", role: "alert" }, error.message));
  }
}

function notFound(message) {
  document.title = "Not found · Aloft";
  main.replaceChildren(h("h1", {}, "Not found"), h("p", { role: "alert" }, message),
    h("p", {}, h("a", { href: "/console/executions" }, "Back to executions")));
}

async function executionsPage(project, domain) {
  document.title = "Executions · Aloft";
  const params = new URLSearchParams(location.search);
  const filters = {
    phases: params.getAll("phase"),
    workflow: params.get("workflow") || "",
    name_prefix: params.get("name") || "",
    label: params.get("label") || "",
    page_token: params.get("page") || "",
  };
  const form = h("form", { class: "filters", "aria-label": "Filters" },
    h("label", {}, "Phase", h("select", { name: "phase" },
      ["", "QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "ABORTED", "TIMED_OUT"].map((p) =>
        h("option", { value: p, selected: filters.phases.includes(p) || (!p && !filters.phases.length) }, p || "any")))),
    h("label", {}, "Workflow", h("input", { name: "workflow", value: filters.workflow })),
    h("label", {}, "Label (key=value)", h("input", { name: "label", value: filters.label, placeholder: "team=ml" })),
    h("label", {}, "Name starts with", h("input", { name: "name", value: filters.name_prefix })),
    h("button", { type: "submit" }, "Filter"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const next = new URLSearchParams({ project, domain });
    for (const [key, value] of new FormData(form)) if (value) next.append(key, value);
    navigate(`/console/executions?${next}`);
  });
  const query = { project, domain, phases: filters.phases, workflow: filters.workflow, name_prefix: filters.name_prefix, limit: 50, page_token: filters.page_token };
  if (filters.label.includes("=")) {
    const [key, ...rest] = filters.label.split("=");
    query[`labels.${key.trim()}`] = rest.join("=").trim();
  }
  const counts = h("div", { class: "counts", "aria-live": "polite" });
  const body = h("tbody");
  const pager = h("div", { class: "actions" });
  main.replaceChildren(h("h1", {}, "Executions"), form, counts,
    h("table", { "aria-label": "Executions" },
      h("thead", {}, h("tr", {}, ["Name", "Phase", "Workflow", "Launch plan", "Started", "Duration", "Labels"].map((c) => h("th", { scope: "col" }, c)))),
      body), pager);
  async function refresh() {
    const countQuery = { ...query };
    delete countQuery.phases; delete countQuery.limit; delete countQuery.page_token;
    const [page, totals] = await Promise.all([call("ListExecutions", query), call("CountExecutions", countQuery)]);
    counts.replaceChildren(h("span", {}, `${totals.total} in all`),
      ...Object.entries(totals.by_phase).map(([phase, n]) => h("span", {}, phaseBadge(phase), ` ${n}`)));
    body.replaceChildren(...page.executions.map((e) => h("tr", { "data-execution": e.id.name },
      h("td", {}, h("a", { href: `/console/executions/${e.id.project}/${e.id.domain}/${e.id.name}` }, e.id.name)),
      h("td", {}, phaseBadge(e.phase)),
      h("td", {}, e.workflow ? `${e.workflow.name}@${e.workflow.version}` : ""),
      h("td", {}, e.launch_plan ? e.launch_plan.name : ""),
      h("td", {}, time(e.started_at_millis || e.created_at_millis)),
      h("td", {}, duration(e.started_at_millis, e.finished_at_millis)),
      h("td", {}, Object.entries(e.labels || {}).map(([k, v]) => `${k}=${v}`).join(" ")))));
    if (!page.executions.length) body.replaceChildren(h("tr", {}, h("td", { colspan: 7, class: "muted" }, "No executions match.")));
    pager.replaceChildren();
    if (filters.page_token) pager.append(h("a", { href: `/console/executions?${withParam("page", "")}` }, "First page"));
    if (page.next_page_token) pager.append(h("a", { href: `/console/executions?${withParam("page", page.next_page_token)}` }, "Next page"));
  }
  await refresh();
  // Live: the list follows new executions and phase changes while it is open.
  const timer = setInterval(() => refresh().catch(() => {}), 2000);
  stopPage = () => clearInterval(timer);
}

function withParam(key, value) {
  const params = new URLSearchParams(location.search);
  if (value) params.set(key, value); else params.delete(key);
  return params.toString();
}

// Where a node's outputs came from, one step each way (the catalog's answer, through the REST API).
async function renderLineage(box, id, nodeId) {
  const title = h("h2", {}, "Lineage");
  try {
    const lineage = await call("GetLineage", { ...id, node: nodeId, depth: 1 });
    const mine = new Set(lineage.selected);
    const artifact = (artifactId) => {
      const [project, domain, execution, node, output] = artifactId.split("/");
      const label = `${execution} / ${node === "@inputs" ? "inputs" : node} / ${output}`;
      return h("a", { href: `/console/executions/${project}/${domain}/${execution}?node=${encodeURIComponent(node)}` }, label);
    };
    const edges = lineage.edges.filter((e) => mine.has(e.to) || mine.has(e.from));
    box.replaceChildren(title, edges.length
      ? h("ul", { "aria-label": "Lineage edges" }, edges.map((e) => h("li", {},
        mine.has(e.to) ? ["from ", artifact(e.from), ` (${e.relation})`] : ["to ", artifact(e.to), ` (${e.relation})`])))
      : h("p", { class: "muted" }, lineage.partial ? `Not known yet: ${lineage.partial_reason}` : "No recorded inputs or consumers."));
  } catch (error) {
    box.replaceChildren(title, h("p", { class: "muted" }, error.message));
  }
}

// Stored results of cached tasks in the tenant, with eviction for the project's admins (the server decides).
async function cachePage(project, domain, notice = "") {
  document.title = "Cache · Aloft";
  const { entries } = await call("ListCacheEntries", { project, domain, limit: 500 });
  const message = h("p", { class: "error", role: "alert" });
  const evict = (task) => h("button", { type: "button", onclick: async () => {
    message.textContent = "";
    try {
      const { evicted } = await call("Evict", { project, domain }, { task_name: task });
      await cachePage(project, domain, `Evicted ${evicted} stored result(s) of ${task}.`);
    } catch (error) { message.textContent = error.message; }
  } }, `Evict ${task}`);
  const tasks = [...new Set((entries || []).map((e) => e.task_name))];
  main.replaceChildren(h("h1", {}, "Cache"), h("p", { role: "status" }, notice), message,
    (entries || []).length ? h("table", { "aria-label": "Cache entries" },
      h("thead", {}, h("tr", {}, ["Task", "Cache version", "Produced by", "Stored"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, entries.map((e) => h("tr", {},
        h("td", {}, e.task_name), h("td", {}, e.cache_version),
        h("td", {}, h("a", { href: `/console/executions/${e.execution.project}/${e.execution.domain}/${e.execution.name}?node=${encodeURIComponent(e.node)}` }, `${e.execution.name} / ${e.node}`)),
        h("td", {}, time(e.created_at_millis))))))
      : h("p", { class: "muted" }, "No stored results in this project and domain."),
    h("div", { class: "actions" }, tasks.map(evict)));
}

async function projectsPage() {
  document.title = "Projects · Aloft";
  const { projects } = await call("ListProjects");
  const rows = [];
  for (const project of projects) {
    for (const domain of project.domains) {
      const counts = await call("CountExecutions", { project: project.name, domain });
      rows.push(h("tr", {},
        h("td", {}, project.name), h("td", {}, domain),
        h("td", {}, h("a", { href: `/console/executions?project=${project.name}&domain=${domain}`, onclick: () => remember(project.name, domain) }, `${counts.total} executions`)),
        h("td", {}, Object.entries(counts.by_phase).map(([p, n]) => `${phaseLabel(p)} ${n}`).join(", "))));
    }
  }
  main.replaceChildren(h("h1", {}, "Projects"), h("table", { "aria-label": "Projects" },
    h("thead", {}, h("tr", {}, ["Project", "Domain", "Executions", "By phase"].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, rows)));
}

function remember(project, domain) {
  localStorage.setItem("aloft.project", project);
  localStorage.setItem("aloft.domain", domain);
}

async function workflowsPage(project, domain) {
  document.title = "Workflows · Aloft";
  const [{ workflows }, { launch_plans: plans }, { tasks }] = await Promise.all([
    call("ListWorkflows", { project, domain }), call("ListLaunchPlans", { project, domain }), call("ListTasks", { project, domain })]);
  const entityRows = (items, kind) => items.map((item) => h("tr", {},
    h("td", {}, h("a", { href: `/console/entities/${kind}/${encodeURIComponent(item.id.name)}` }, item.id.name)),
    h("td", {}, item.id.version), h("td", {}, time(item.registered_at_millis)),
    h("td", {}, kind === "workflow" ? h("a", { href: `/console/launch/${project}/${domain}/${item.id.name}` }, "Launch…") : "")));
  const table = (label, rows) => h("table", { "aria-label": label },
    h("thead", {}, h("tr", {}, ["Name", "Version", "Registered", ""].map((c) => h("th", { scope: "col" }, c)))), h("tbody", {}, rows));
  main.replaceChildren(h("h1", {}, "Workflows, launch plans and tasks"),
    h("h2", {}, "Workflows"), table("Workflows", entityRows(workflows, "workflow")),
    h("h2", {}, "Launch plans"), table("Launch plans", entityRows(plans, "plan")),
    h("h2", {}, "Tasks"), table("Tasks", entityRows(tasks, "task")));
}

const ENTITY_CALLS = {
  workflow: ["GetWorkflow", "ListWorkflows", "workflows"],
  plan: ["GetLaunchPlan", "ListLaunchPlans", "launch_plans"],
  task: ["GetTask", "ListTasks", "tasks"],
};

/// One task, workflow or launch plan: its versions, the chosen version's spec and interface, a workflow's
/// graph, a launch plan's schedule with its next fire time and the active toggle, and a launch link.
async function entityPage(project, domain, kind, name) {
  const calls = ENTITY_CALLS[kind];
  if (!calls) { notFound(`There is no kind of entity ${kind}: use workflow, plan or task.`); return; }
  const [get, list, field] = calls;
  const version = new URLSearchParams(location.search).get("version") || undefined;
  // One version has its own route (`...Version`); without one, the latest.
  const [entity, listed] = await Promise.all([
    version ? call(`${get}Version`, { project, domain, name, version }) : call(get, { project, domain, name }),
    call(list, { project, domain, name })]);
  document.title = `${name} · Aloft`;
  const spec = JSON.parse(entity.spec_json || "{}");
  const versions = h("table", { "aria-label": "Versions" },
    h("thead", {}, h("tr", {}, ["Version", "Registered", ""].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, (listed[field] || []).map((item) => h("tr", {},
      h("td", {}, h("a", { href: `/console/entities/${kind}/${encodeURIComponent(name)}?version=${encodeURIComponent(item.id.version)}`,
        "aria-current": String(item.id.version === entity.id.version) }, item.id.version)),
      h("td", {}, time(item.registered_at_millis)),
      h("td", {}, item.active ? "active" : "")))));
  const sections = [h("h1", {}, `${name}@${entity.id.version}`), h("h2", {}, "Versions"), versions];
  if (kind === "plan") sections.push(...scheduleSection(project, domain, entity, spec));
  if (entity.interface) sections.push(h("h2", {}, "Interface"), interfaceTable(entity.interface));
  if (kind === "workflow") {
    const graph = h("section", { "aria-label": "Graph preview" });
    sections.push(h("h2", {}, "Graph"), graph,
      h("p", {}, h("a", { href: `/console/launch/${project}/${domain}/${encodeURIComponent(name)}` }, "Launch…")));
    // The spec's nodes as an execution that has not started: the same drawing the execution page uses.
    const nodes = (spec.nodes || []).map((node) => ({ node_id: node.id, phase: "NODE_NOT_STARTED", upstream: upstreamOf(node, spec) }));
    renderGraph(graph, { nodes, children: {} }, () => {}, () => "#");
  }
  if (kind === "plan") sections.push(h("p", {}, h("a", { href: `/console/launch/${project}/${domain}/${encodeURIComponent(entity.workflow.name)}?plan=${encodeURIComponent(name)}` }, "Launch…")));
  sections.push(h("h2", {}, "Spec"), h("pre", { "aria-label": "Spec" }, JSON.stringify(spec, null, 2)));
  main.replaceChildren(...sections);
}

/// The nodes a spec node reads from (`a.n` bindings) and waits for (`after`).
function upstreamOf(node, spec) {
  const ids = new Set((spec.nodes || []).map((n) => n.id));
  const found = new Set(node.after || []);
  for (const binding of Object.values(node.inputs || {})) {
    const source = typeof binding === "string" ? binding.split(".")[0] : null;
    if (source && ids.has(source)) found.add(source);
  }
  return [...found];
}

function interfaceTable(typed) {
  const rows = [];
  for (const [side, types, schemas] of [["input", typed.inputs, typed.input_schemas_json], ["output", typed.outputs, typed.output_schemas_json]]) {
    for (const [name, type] of Object.entries(types || {})) {
      const schema = schemas?.[name];
      rows.push(h("tr", {}, h("td", {}, side), h("th", { scope: "row" }, name), h("td", {}, typeText(type)),
        h("td", {}, schema ? h("details", {}, h("summary", {}, "schema"), h("pre", {}, JSON.stringify(JSON.parse(schema), null, 2))) : "")));
    }
  }
  return h("table", { "aria-label": "Interface" },
    h("thead", {}, h("tr", {}, ["", "Name", "Type", ""].map((c) => h("th", { scope: "col" }, c)))), h("tbody", {}, rows));
}

function typeText(type) {
  if (!type) return "struct";
  if ("simple" in type) return String(type.simple).toLowerCase();
  if ("blob" in type) return type.blob.format ? `blob<${type.blob.format}>` : "blob";
  if ("list" in type) return `list<${typeText(type.list)}>`;
  if ("map" in type) return `map<${typeText(type.map)}>`;
  if ("optional" in type) return `optional<${typeText(type.optional)}>`;
  return JSON.stringify(type);
}

function scheduleSection(project, domain, plan, spec) {
  const schedule = spec.schedule;
  const message = h("p", { class: "error", role: "alert" });
  const toggle = h("button", { type: "button", onclick: async () => {
    message.textContent = "";
    const id = { project, domain, name: plan.id.name, version: plan.id.version };
    try { await call(plan.active ? "DeactivateLaunchPlan" : "ActivateLaunchPlan", id, {}); route(); } catch (error) { message.textContent = error.message; }
  } }, plan.active ? "Deactivate" : "Activate");
  const when = schedule ? (schedule.cron ? `cron ${schedule.cron}${schedule.timezone ? ` (${schedule.timezone})` : ""}` : `every ${schedule.fixed_rate}`) : "no schedule";
  return [h("h2", {}, "Schedule"),
    h("div", { class: "header-grid" },
      h("span", { class: "muted" }, "Workflow"), h("span", {}, `${plan.workflow.name}@${plan.workflow.version}`),
      h("span", { class: "muted" }, "Schedule"), h("span", {}, when),
      h("span", { class: "muted" }, "State"), h("span", { "data-state": plan.active ? "active" : "inactive" }, plan.active ? "active" : "inactive"),
      h("span", { class: "muted" }, "Next fire"), h("span", { "data-next-fire": "" }, Number(plan.next_fire_at_millis) > 0 ? time(plan.next_fire_at_millis) : "—")),
    h("h2", {}, "Inputs"), valuesTable(plan.default_inputs, "Default inputs"), valuesTable(plan.fixed_inputs, "Fixed inputs"),
    h("div", { class: "actions" }, toggle), message];
}

/// Every tenant the caller may read with its fair-share quota and its attempts running and waiting now,
/// and the fleet's resource pools.
async function tenantsPage() {
  document.title = "Tenants · Aloft";
  const { tenants, pools } = await call("ListTenants");
  main.replaceChildren(h("h1", {}, "Tenants"),
    h("table", { "aria-label": "Tenants" },
      h("thead", {}, h("tr", {}, ["Project", "Domain", "Weight", "Max running", "Running", "Waiting", "Quota set"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, tenants.map((t) => h("tr", { "data-tenant": `${t.project}/${t.domain}` },
        h("td", {}, t.project), h("td", {}, t.domain), h("td", { "data-weight": "" }, String(t.weight)),
        h("td", { "data-max-running": "" }, Number(t.max_running) > 0 ? String(t.max_running) : "no limit"),
        h("td", { "data-running": "" }, String(t.running_attempts)), h("td", { "data-waiting": "" }, String(t.waiting_attempts)),
        h("td", {}, Number(t.quota_set_at_millis) > 0 ? time(t.quota_set_at_millis) : "defaults"))))),
    h("h2", {}, "Resource pools"),
    pools.length ? h("table", { "aria-label": "Resource pools" },
      h("thead", {}, h("tr", {}, ["Pool", "Held", "Limit"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, pools.map((p) => h("tr", { "data-pool": p.name },
        h("td", {}, p.name), h("td", { "data-held": "" }, String(p.held)), h("td", {}, String(p.limit))))))
      : h("p", { class: "muted" }, "No resource pool is defined."));
}

/// Notification deliveries of the project and domain: each attempt and outcome, newest first, grouped by
/// delivery.
async function deliveriesPage(project, domain) {
  document.title = "Deliveries · Aloft";
  const { events } = await call("ListDeliveries", { project, domain, limit: 500 });
  const byDelivery = new Map();
  for (const event of events) {
    if (!byDelivery.has(event.delivery_id)) byDelivery.set(event.delivery_id, []);
    byDelivery.get(event.delivery_id).push(event);
  }
  const rows = [...byDelivery.entries()].map(([delivery, attempts]) => {
    const last = attempts[0];
    return h("tr", {},
      h("td", {}, h("a", { href: `/console/executions/${project}/${domain}/${last.execution}?tab=history` }, last.execution)),
      h("td", {}, delivery), h("td", { "data-delivery-kind": last.kind }, last.kind), h("td", {}, String(attempts.length)),
      h("td", {}, time(last.occurred_at_millis)),
      h("td", {}, h("details", {}, h("summary", {}, last.summary), h("ol", {}, attempts.slice().reverse().map((a) => h("li", {}, `${time(a.occurred_at_millis)} · ${a.kind} · ${a.summary}`))))));
  });
  main.replaceChildren(h("h1", {}, "Notification deliveries"),
    rows.length ? h("table", { "aria-label": "Deliveries" },
      h("thead", {}, h("tr", {}, ["Execution", "Delivery", "Last", "Attempts", "When", "What happened"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, rows))
      : h("p", { class: "muted" }, "No notification was sent in this project and domain."));
}

function simpleType(type) {
  if (!type) return "STRUCT";
  if ("simple" in type) return type.simple;
  if ("optional" in type) return simpleType(type.optional);
  return "JSON";
}

/// A form generated from a workflow's typed interface; `prefill` holds text values (a relaunch's inputs).
function inputsForm(inputs, prefill, submitLabel, onSubmit, fixed = {}) {
  const form = h("form", { "aria-label": submitLabel, novalidate: true });
  const errors = {};
  for (const [name, type] of Object.entries(inputs || {})) {
    const kind = simpleType(type);
    const id = `input-${name}`;
    if (name in fixed) {
      // A launch plan's fixed input: shown, not editable, not sent (the plan supplies it).
      form.append(h("label", { for: id }, `${name} (${kind.toLowerCase()}, fixed by the launch plan)`,
        h("input", { id, value: fixed[name], readonly: true, disabled: true })));
      continue;
    }
    const control = kind === "BOOLEAN"
      ? h("select", { id, name }, h("option", { value: "" }, "—"), h("option", { value: "true", selected: prefill[name] === "true" }, "true"), h("option", { value: "false", selected: prefill[name] === "false" }, "false"))
      : kind === "JSON" || kind === "STRUCT"
        ? h("textarea", { id, name, rows: 3 }, prefill[name] || "")
        : h("input", { id, name, value: prefill[name] ?? "", inputmode: kind === "INTEGER" || kind === "FLOAT" ? "decimal" : undefined });
    errors[name] = h("span", { class: "field-error", id: `${id}-error`, role: "alert" });
    control.setAttribute("aria-describedby", `${id}-error`);
    form.append(h("label", { for: id }, `${name} (${kind.toLowerCase()})`, control, errors[name]));
  }
  const general = h("p", { class: "error", role: "alert" });
  form.append(h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, submitLabel)), general);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    for (const span of Object.values(errors)) span.textContent = "";
    general.textContent = "";
    const text = {};
    for (const [key, value] of new FormData(form)) if (value !== "") text[key] = value;
    try {
      await onSubmit(text);
    } catch (error) {
      // The server names the input it refuses ("input x (integer): ..."): show it at that field.
      const field = Object.keys(errors).find((name) => new RegExp(`\\binputs?\\s+"?${name}"?\\b`).test(error.message));
      if (field) errors[field].textContent = error.message;
      else general.textContent = error.message;
    }
  });
  return form;
}

async function launchPage(project, domain, name) {
  document.title = `Launch ${name} · Aloft`;
  // `?plan=NAME` launches that launch plan: its defaults prefilled, its fixed inputs shown read-only.
  const planName = new URLSearchParams(location.search).get("plan");
  const plan = planName ? await call("GetLaunchPlan", { project, domain, name: planName }) : null;
  const workflow = plan
    ? await call("GetWorkflowVersion", { project, domain, name: plan.workflow.name, version: plan.workflow.version })
    : await call("GetWorkflow", { project, domain, name });
  const texts = (map) => Object.fromEntries(Object.entries(map?.values || {}).map(([k, v]) => [k, literalText(v)]));
  const target = plan
    ? { launch_plan: { project, domain, name: plan.id.name, version: plan.id.version } }
    : { workflow: { project, domain, name, version: workflow.id.version } };
  const form = inputsForm(workflow.interface?.inputs, texts(plan?.default_inputs), "Launch", async (text) => {
    const labels = {};
    const labelText = main.querySelector("#launch-labels").value.trim();
    for (const pair of labelText.split(/[\s,]+/).filter(Boolean)) {
      const [key, ...rest] = pair.split("=");
      labels[key] = rest.join("=");
    }
    const created = await call("CreateExecution", { project, domain }, { ...target, text_inputs: text, labels });
    navigate(`/console/executions/${project}/${domain}/${created.id.name}`);
  }, texts(plan?.fixed_inputs));
  form.prepend(h("label", { for: "launch-labels" }, "Labels (key=value, space separated)", h("input", { id: "launch-labels", name: "__labels" })));
  // The labels field is not an input of the workflow.
  form.addEventListener("formdata", (event) => event.formData.delete("__labels"));
  main.replaceChildren(h("h1", {}, plan ? `Launch ${plan.id.name}@${plan.id.version}` : `Launch ${name}@${workflow.id.version}`), form);
}

// ---- one execution ----
async function executionPage(project, domain, name) {
  const params = new URLSearchParams(location.search);
  const tab = params.get("tab") || "graph";
  const at = params.get("at");
  const selected = params.get("node");
  const parent = params.get("parent") || "";
  const id = { project, domain, name };
  // The Nodes and Graph tabs page their nodes themselves: the header needs the execution alone (a
  // 10,000-item map's nodes would otherwise all travel before the first row shows).
  const execution = at
    ? await call("GetExecutionState", { ...id, at_index: at })
    : await call("GetExecution", { ...id, without_nodes: (tab === "nodes" || tab === "graph") && !selected });
  document.title = `${name} · Aloft`;
  const link = (changes) => {
    const next = new URLSearchParams(location.search);
    for (const [k, v] of Object.entries(changes)) if (v === null) next.delete(k); else next.set(k, v);
    return `/console/executions/${project}/${domain}/${name}?${next}`;
  };
  const tabs = h("div", { class: "tabs", role: "tablist" }, ["graph", "nodes", "timeline", "history"].map((t) =>
    h("a", { role: "tab", href: link({ tab: t }), "aria-selected": String(t === tab) }, t[0].toUpperCase() + t.slice(1))));
  const panel = h("section", { role: "tabpanel", "aria-label": tab });
  const detail = selected ? h("aside", { class: "detail", "aria-label": "Node detail" }) : null;
  const header = executionHeader(execution, id, at);
  main.replaceChildren(
    at ? h("p", { class: "banner", role: "status" }, `As it was right after event ${at} of the history. `, h("a", { href: link({ at: null }) }, "Back to now")) : "",
    header, tabs, h("div", { class: selected ? "layout with-detail" : "layout" }, panel, detail));
  const openNode = (nodeId) => navigate(link({ node: nodeId }));
  if (tab === "graph") renderGraph(panel, await graphNodes(execution, id, at || selected), openNode, link);
  if (tab === "nodes") await renderNodes(panel, execution, id, parent, openNode, at, link);
  if (tab === "timeline") renderTimeline(panel, execution);
  if (tab === "history") await renderHistory(panel, id, at, link);
  if (selected) await renderNodeDetail(detail, execution, id, selected, link);
  // Live: while it runs (and we look at now), each new event refreshes the page.
  const terminal = ["SUCCEEDED", "FAILED", "ABORTED", "TIMED_OUT"].includes(execution.phase);
  if (!at && !terminal) {
    const { url } = operationUrl("WatchExecution", id);
    const source = watchEvents(url);
    let pending = null;
    // Never while the user types into a field: the page waits for the field to lose focus.
    const rerender = () => {
      if (pending) return;
      pending = setTimeout(() => {
        pending = null;
        if (["INPUT", "TEXTAREA", "SELECT"].includes(document.activeElement?.tagName)) rerender();
        else route();
      }, 300);
    };
    source.addEventListener("history", rerender);
    source.addEventListener("end", () => { source.close(); rerender(); });
    const previous = stopPage;
    stopPage = () => { previous(); source.close(); clearTimeout(pending); };
  }
}

function executionHeader(execution, id, at) {
  const inputs = Object.fromEntries(Object.entries(execution.inputs?.values || {}).map(([k, v]) => [k, literalText(v)]));
  const actions = h("div", { class: "actions" });
  const message = h("p", { class: "error", role: "alert" });
  const act = (label, run) => h("button", { type: "button", onclick: async () => {
    message.textContent = "";
    try { await run(); } catch (error) { message.textContent = error.message; }
  } }, label);
  const running = !["SUCCEEDED", "FAILED", "ABORTED", "TIMED_OUT"].includes(execution.phase);
  const relaunchBox = h("div");
  if (!at) {
    if (running) actions.append(act("Terminate", async () => {
      await call("TerminateExecution", id, { reason: "terminated from the console" });
      route();
    }));
    actions.append(act("Relaunch…", async () => {
      // The form is typed from the interface of the workflow version that ran, prefilled with its inputs.
      const workflow = execution.workflow
        ? await call("GetWorkflowVersion", { project: id.project, domain: id.domain, name: execution.workflow.name, version: execution.workflow.version })
        : null;
      relaunchBox.replaceChildren(h("h2", {}, "Relaunch with"), inputsForm(
        workflow?.interface?.inputs || Object.fromEntries(Object.keys(inputs).map((k) => [k, { simple: "STRING" }])),
        inputs, "Relaunch", async (text) => {
          const created = await call("RelaunchExecution", id, { text_inputs: text });
          navigate(`/console/executions/${id.project}/${id.domain}/${created.id.name}`);
        }));
    }));
    if (["FAILED", "ABORTED", "TIMED_OUT"].includes(execution.phase)) actions.append(act("Recover", async () => {
      const created = await call("RecoverExecution", id, {});
      navigate(`/console/executions/${id.project}/${id.domain}/${created.id.name}`);
    }));
    if (running) {
      const signal = h("input", { id: "signal-name", placeholder: "signal name" });
      const value = h("input", { id: "signal-value", placeholder: "value" });
      actions.append(h("label", { for: "signal-name" }, "Signal", signal), h("label", { for: "signal-value" }, "Value", value),
        act("Send signal", async () => { await call("SignalExecution", id, { signal: signal.value, value: value.value }); route(); }));
    }
  }
  return h("section", { "aria-label": "Execution" },
    h("h1", {}, id.name, " ", phaseBadge(execution.phase)),
    h("div", { class: "header-grid" },
      h("span", { class: "muted" }, "Workflow"), h("span", {}, execution.workflow ? `${execution.workflow.name}@${execution.workflow.version}` : ""),
      h("span", { class: "muted" }, "Created"), h("span", {}, time(execution.created_at_millis)),
      h("span", { class: "muted" }, "Duration"), h("span", {}, duration(execution.started_at_millis, execution.finished_at_millis)),
      h("span", { class: "muted" }, "Labels"), h("span", {}, Object.entries(execution.labels || {}).map(([k, v]) => `${k}=${v}`).join(" ") || "—"),
      h("span", { class: "muted" }, "Launched by"), h("span", {}, execution.launched_by ? who(execution.launched_by) : "—"),
      execution.error ? [h("span", { class: "muted" }, "Error"), h("span", { class: "error" }, execution.error)] : []),
    h("h2", {}, "Inputs"), valuesTable(execution.inputs, "Inputs", { id, from_inputs: true }),
    h("h2", {}, "Outputs"), valuesTable(execution.outputs, "Outputs", { id }),
    actions, message, relaunchBox);
}

const isTopLevel = (id) => !id.includes("/") && !id.includes("[");

/// The workflow's own nodes, and for each with nodes under it those nodes' counts by phase. From an execution
/// that carries its nodes (a point of the history, or a page with a node open), else paged from the API: only
/// the top-level nodes travel, a 10,000-item map's items as counts.
async function graphNodes(execution, id, hasNodes) {
  if (hasNodes) {
    const children = {};
    for (const n of execution.nodes) {
      if (isTopLevel(n.node_id)) continue;
      const top = n.node_id.split(/[/[]/)[0];
      (children[top] ||= {})[n.phase] = ((children[top] ||= {})[n.phase] || 0) + 1;
    }
    return { nodes: execution.nodes.filter((n) => isTopLevel(n.node_id)), children };
  }
  const query = { ...id, top_level: true, limit: 500 };
  const first = await call("ListNodeExecutions", query);
  let nodes = first.nodes;
  for (let token = first.next_page_token; token;) {
    const page = await call("ListNodeExecutions", { ...query, page_token: token });
    nodes = nodes.concat(page.nodes);
    token = page.next_page_token;
  }
  const children = Object.fromEntries(Object.entries(first.child_phase_counts || {}).map(([top, counts]) =>
    [top, Object.fromEntries(Object.entries(counts.by_phase || {}).map(([phase, n]) => [phase, Number(n)]))]));
  return { nodes, children };
}

/// A layered drawing of the workflow's own nodes; a map's items, a subworkflow's inner nodes collapse into
/// their node with counts per phase, and open (in the Nodes tab) on click.
function renderGraph(panel, { nodes, children }, openNode, link) {
  const layer = {};
  const byId = Object.fromEntries(nodes.map((n) => [n.node_id, n]));
  const depth = (nodeId, seen = new Set()) => {
    if (layer[nodeId] !== undefined) return layer[nodeId];
    if (seen.has(nodeId)) return 0;
    seen.add(nodeId);
    const ups = (byId[nodeId]?.upstream || []).filter((u) => byId[u]);
    return (layer[nodeId] = ups.length ? 1 + Math.max(...ups.map((u) => depth(u, seen))) : 0);
  };
  nodes.forEach((n) => depth(n.node_id));
  const columns = {};
  for (const n of nodes) (columns[layer[n.node_id]] ||= []).push(n);
  const W = 190, H = 54, GX = 60, GY = 22;
  const position = {};
  for (const [col, list] of Object.entries(columns)) list.forEach((n, row) => { position[n.node_id] = { x: 10 + col * (W + GX), y: 10 + row * (H + GY) }; });
  const width = 20 + (Object.keys(columns).length) * (W + GX);
  const height = 20 + Math.max(1, ...Object.values(columns).map((l) => l.length)) * (H + GY);
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "graph");
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  svg.setAttribute("role", "group");
  svg.setAttribute("aria-label", "Workflow graph");
  const el = (tag, attrs) => { const e = document.createElementNS(ns, tag); for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v); return e; };
  for (const n of nodes) for (const up of n.upstream || []) {
    const a = position[up], b = position[n.node_id];
    if (!a || !b) continue;
    svg.append(el("path", { d: `M${a.x + W},${a.y + H / 2} C${a.x + W + GX / 2},${a.y + H / 2} ${b.x - GX / 2},${b.y + H / 2} ${b.x},${b.y + H / 2}` }));
  }
  for (const n of nodes) {
    const p = position[n.node_id];
    const g = el("g", { class: "node", transform: `translate(${p.x},${p.y})`, tabindex: "0", role: "button", "data-node": n.node_id,
      "aria-label": `${n.node_id}: ${phaseLabel(n.phase)}` });
    g.append(el("rect", { width: W, height: H, rx: 6 }));
    const title = el("text", { x: 10, y: 20 }); title.textContent = n.node_id;
    const phase = el("text", { x: 10, y: 40, class: `phase ${n.phase}` });
    const inner = children[n.node_id];
    phase.textContent = inner
      ? Object.entries(inner).map(([ph, count]) => `${count} ${phaseLabel(ph).toLowerCase()}`).join(", ")
      : phaseLabel(n.phase);
    g.append(title, phase);
    const open = () => (inner ? navigate(link({ tab: "nodes", parent: n.node_id, node: null })) : openNode(n.node_id));
    g.addEventListener("click", open);
    g.addEventListener("keydown", (event) => { if (event.key === "Enter" || event.key === " ") { event.preventDefault(); open(); } });
    svg.append(g);
  }
  panel.replaceChildren(svg);
}

/// Every node (or one node's children) in a virtualized table: pages of 500 load as the table needs them,
/// and only the rows in view are in the DOM, so a 10,000-item map scrolls smoothly.
async function renderNodes(panel, execution, id, parent, openNode, at, link) {
  const params = new URLSearchParams(location.search);
  const failedOnly = params.get("failed") === "1";
  const ROW = 28;
  let rows = [];
  let total = 0;
  if (at) {
    rows = execution.nodes.filter((n) => (!parent || n.node_id.startsWith(`${parent}[`) || n.node_id.startsWith(`${parent}/`))
      && (!failedOnly || n.phase === "NODE_FAILED"));
    total = rows.length;
  } else {
    const query = { ...id, parent, limit: 500, phases: failedOnly ? ["NODE_FAILED"] : [] };
    const first = await call("ListNodeExecutions", query);
    rows = first.nodes;
    total = failedOnly ? (Number(first.phase_counts.NODE_FAILED) || 0) : Object.values(first.phase_counts).reduce((a, b) => a + Number(b), 0);
    let token = first.next_page_token;
    (async () => {
      while (token) {
        const page = await call("ListNodeExecutions", { ...query, page_token: token });
        rows = rows.concat(page.nodes);
        token = page.next_page_token;
        draw();
      }
    })().catch(() => {});
  }
  const viewport = h("div", { class: "virtual", role: "table", "aria-label": "Nodes", "aria-rowcount": String(total), tabindex: "0" });
  const spacer = h("div", { style: `height:${total * ROW}px` });
  viewport.append(spacer);
  function draw() {
    const first = Math.max(0, Math.floor(viewport.scrollTop / ROW) - 10);
    const last = Math.min(rows.length, first + Math.ceil(viewport.clientHeight / ROW) + 20);
    const visible = [];
    for (let i = first; i < last; i++) {
      const n = rows[i];
      visible.push(h("div", { class: "row", role: "row", style: `top:${i * ROW}px`, tabindex: "0", "data-node": n.node_id,
        onclick: () => openNode(n.node_id), onkeydown: (e) => { if (e.key === "Enter") openNode(n.node_id); } },
        h("span", { role: "cell" }, n.node_id), h("span", { role: "cell" }, phaseBadge(n.phase)),
        h("span", { role: "cell" }, `${n.attempts} attempt${n.attempts === 1 ? "" : "s"}`),
        h("span", { role: "cell" }, duration(n.started_at_millis, n.finished_at_millis)),
        h("span", { role: "cell", class: "error" }, n.error)));
    }
    spacer.replaceChildren(...visible);
  }
  viewport.addEventListener("scroll", () => requestAnimationFrame(draw));
  const toggle = h("label", {}, h("input", { type: "checkbox", checked: failedOnly, onchange: (e) => navigate(link({ failed: e.target.checked ? "1" : null })) }), "Failed only");
  panel.replaceChildren(h("div", { class: "actions" }, parent ? h("span", {}, `Inside ${parent} · `, h("a", { href: link({ parent: null }) }, "all nodes")) : "", toggle,
    h("span", { class: "muted", "data-count": String(total) }, `${total} nodes`)), viewport);
  requestAnimationFrame(draw);
}

/// A Gantt of attempts; time spent waiting for resources is shaded apart, its reason on hover.
function renderTimeline(panel, execution) {
  const attempts = execution.attempts.filter((a) => Number(a.started_at_millis) > 0).slice(0, 2000);
  if (!attempts.length) { panel.replaceChildren(h("p", { class: "muted" }, "No attempts yet.")); return; }
  const start = Math.min(...attempts.map((a) => Number(a.started_at_millis)));
  const end = Math.max(...attempts.map((a) => Number(a.finished_at_millis) || Date.now()));
  const span = Math.max(1, end - start);
  const waiting = Object.fromEntries(execution.nodes.filter((n) => n.wait_reason).map((n) => [n.node_id, n.wait_reason]));
  panel.replaceChildren(h("div", { class: "gantt", role: "list", "aria-label": "Timeline" }, attempts.map((a) => {
    const left = ((Number(a.started_at_millis) - start) / span) * 100;
    const width = Math.max(0.5, (((Number(a.finished_at_millis) || Date.now()) - Number(a.started_at_millis)) / span) * 100);
    const isWaiting = a.attempt_phase === "ATTEMPT_WAITING_FOR_RESOURCES";
    return h("div", { class: "bar-row", role: "listitem" }, h("span", {}, `${a.node_id} #${a.attempt}`),
      h("div", { class: "track" }, h("div", { class: `bar ${a.phase}${isWaiting ? " wait" : ""}`, style: `left:${left}%;width:${width}%`,
        title: isWaiting ? `waiting for resources: ${waiting[a.node_id] || ""}` : `${a.phase} ${duration(a.started_at_millis, a.finished_at_millis)}` })));
  })));
}

/// Every event; choosing one shows the graph and nodes as they were right after it (time travel).
async function renderHistory(panel, id, at, link) {
  const { events } = await call("GetExecutionHistory", id);
  panel.replaceChildren(h("ol", { class: "history", "aria-label": "History" }, events.filter((e) => e.index !== "0").map((e) =>
    h("li", {}, h("button", { type: "button", "data-index": e.index, "aria-current": String(at === e.index),
      onclick: () => navigate(link({ at: e.index, tab: "graph" })) },
      `${e.index}. ${time(e.occurred_at_millis)} · ${e.kind} · ${e.summary}${e.principal ? ` · by ${who(e.principal)}` : ""}`)))));
}

async function renderNodeDetail(aside, execution, id, nodeId, link) {
  const node = execution.nodes.find((n) => n.node_id === nodeId);
  if (!node) { aside.replaceChildren(h("p", { role: "alert" }, `No node ${nodeId} in this execution.`)); return; }
  const attempts = execution.attempts.filter((a) => a.node_id === nodeId);
  const actions = h("div", { class: "actions" });
  const message = h("p", { class: "error", role: "alert" });
  if (node.phase === "NODE_RUNNING" && node.attempts === 0) {
    actions.append(h("button", { type: "button", class: "primary", onclick: async () => {
      try { await call("ApproveExecution", id, { node: nodeId }); route(); } catch (error) { message.textContent = error.message; }
    } }, "Approve"));
  }
  const log = h("pre", { "aria-label": "Log", "data-log": nodeId }, attempts.length ? "Loading the log…" : "No attempt, no log.");
  const inputsBox = h("div", { "data-inputs": nodeId }, h("p", { class: "muted" }, "Loading…"));
  const lineage = h("section", { "aria-label": "Lineage" }, h("h2", {}, "Lineage"), h("p", { class: "muted" }, "Loading…"));
  aside.replaceChildren(
    h("h2", {}, nodeId, " ", phaseBadge(node.phase)), h("p", {}, h("a", { href: link({ node: null }) }, "Close")),
    node.error ? h("p", { class: "error" }, node.error) : "",
    node.wait_reason ? h("p", {}, `Waiting for: ${node.wait_reason}`) : "",
    node.child_execution ? h("p", {}, "Child execution: ", h("a", { href: `/console/executions/${id.project}/${id.domain}/${node.child_execution}` }, node.child_execution)) : "",
    actions, message,
    h("h2", {}, "Attempts"),
    h("table", { "aria-label": "Attempts" }, h("tbody", {}, attempts.map((a) => h("tr", {},
      h("td", {}, `#${a.attempt}`), h("td", {}, phaseBadge(a.phase)), h("td", {}, a.error_kind), h("td", {}, a.cache_status),
      h("td", {}, a.cache_source ? h("a", { href: `/console/executions/${id.project}/${id.domain}/${a.cache_source.split("/")[0]}` }, "reused from") : ""),
      h("td", { class: "error" }, a.error))))),
    h("h2", {}, "Inputs"), inputsBox,
    h("h2", {}, "Outputs"), valuesTable(node.outputs, "Outputs", { id, node_id: nodeId }),
    lineage,
    h("h2", {}, "Log"), log);
  renderLineage(lineage, id, nodeId);
  call("GetNodeData", { ...id, node_id: nodeId })
    .then((data) => inputsBox.replaceChildren(data.inputs ? valuesTable(data.inputs, "Inputs", { id, node_id: nodeId, from_inputs: true }) : h("p", { class: "muted" }, "Not known yet: a node it reads has not produced its value.")))
    .catch((error) => inputsBox.replaceChildren(h("p", { class: "error" }, error.message)));
  if (!attempts.length) return;
  const running = attempts[attempts.length - 1].attempt_phase === "ATTEMPT_RUNNING";
  const now = !new URLSearchParams(location.search).get("at");
  if (running && now) followLog(log, { ...id, node_id: nodeId });
  else {
    try {
      log.textContent = (await callText("GetTaskLogs", { ...id, node_id: nodeId })) || "(empty)";
    } catch (error) {
      log.textContent = error.message;
    }
  }
}

/// A running attempt's log, streamed as the task prints it (GetTaskLogs with follow) until the attempt
/// ends or the page changes.
function followLog(log, params) {
  const controller = new AbortController();
  const previous = stopPage;
  stopPage = () => { previous(); controller.abort(); };
  log.textContent = "";
  log.setAttribute("aria-live", "polite");
  (async () => {
    const { url } = operationUrl("GetTaskLogs", { ...params, follow: "true" });
    const response = await fetch(url, { headers: authHeaders(), signal: controller.signal });
    if (!response.ok) { log.textContent = await response.text(); return; }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      log.textContent += decoder.decode(value, { stream: true });
    }
  })().catch((error) => { if (error.name !== "AbortError") log.append(`\n${error.message}`); });
}

route();
