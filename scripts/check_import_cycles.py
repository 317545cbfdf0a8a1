#!/usr/bin/env python3
"""No import circle among the files of any crate: each crate's modules must stand in floors, with no `use`
running back up (issue 16). Reads every `src/` tree given (default: every crate of the workspace), follows
`use crate::..`, `use super::..`, `use self::..` and `use CHILD::..` of declared child modules, and fails
naming each circle. Module declarations (`mod x;`) and re-exports downward are not circles."""
import os,re,sys,glob
def crate_files(src):
    files={}
    for f in glob.glob(src+'/**/*.rs', recursive=True):
        rel=os.path.relpath(f,src)[:-3]
        parts=rel.split('/')
        if parts[-1] in ('mod','lib','main'): parts=parts[:-1]
        key='::'.join(parts)
        if key in files and f.endswith('main.rs'): continue
        files[key]=f
    return files
def resolve(mods, path):
    parts=[p for p in path.split('::') if p]
    for k in range(len(parts),-1,-1):
        m='::'.join(parts[:k])
        if m in mods: return m
    return None
def expand(prefix, body):
    # crate::a::{b, c::d, self} -> [a::b, a::c::d, a]
    out=[]
    depth=0; cur=''
    items=[]
    for ch in body:
        if ch=='{': depth+=1
        if ch=='}': depth-=1
        if ch==',' and depth==0: items.append(cur); cur=''
        else: cur+=ch
    items.append(cur)
    for it in items:
        it=it.strip()
        if not it: continue
        m=re.match(r'([\w:]*?)(?:::)?\{(.*)\}$', it, re.S)
        if m:
            out+=expand(prefix+('::' if prefix and m.group(1) else '')+m.group(1), m.group(2))
        else:
            it=it.split(' as ')[0]
            out.append(prefix+'::'+it if prefix else it)
    return out
def analyze(src):
    mods=crate_files(src)
    edges={m:set() for m in mods}
    for m,f in mods.items():
        text=open(f).read()
        text=re.sub(r'//[^\n]*','',text)
        # drop #[cfg(test)] mod tests { ... } blocks crudely
        i=text.find('#[cfg(test)]\nmod tests {')
        if i>=0: text=text[:i]
        here=m.split('::') if m else []
        parent=here[:-1]
        children=set(re.findall(r'\bmod (\w+);', text))
        paths=[]
        for stmt in re.findall(r'\buse\s+([^;]+);', text, re.S):
            stmt=re.sub(r'\s+',' ',stmt).strip()
            paths+=expand('', stmt) if '{' in stmt else [stmt.split(' as ')[0]]
        paths+=[b+r for b,r in re.findall(r'\b(crate|super|self)((?:::\w+)+)', text)]
        for p in paths:
            p=p.replace('::*','')
            segs=p.split('::')
            if segs[0]=='crate': full=segs[1:]
            elif segs[0]=='super':
                # super of module m is its parent
                full=parent+segs[1:]
            elif segs[0]=='self': full=here+segs[1:]
            elif segs[0] in children: full=here+segs
            else: continue
            t=resolve(mods,'::'.join(full))
            if t is not None and t!=m:
                edges[m].add(t)
    sys.setrecursionlimit(10000)
    cycles=[]; color={}; stack=[]
    def dfs(u):
        color[u]=1; stack.append(u)
        for v in sorted(edges[u]):
            if color.get(v)==1: cycles.append(stack[stack.index(v):]+[v])
            elif color.get(v) is None: dfs(v)
        stack.pop(); color[u]=2
    for m in sorted(mods):
        if color.get(m) is None: dfs(m)
    return cycles
total=0
roots=sys.argv[1:] or sorted(glob.glob('libs/*/src')+glob.glob('services/*/src')+glob.glob('tools/*/src')+['tests/src'])
for src in roots:
    cs=analyze(src)
    total+=len(cs)
    if cs:
        print(src, 'cycles:', len(cs))
        for c in cs[:8]: print('   ', ' -> '.join(x or '<root>' for x in c))
if total:
    print(f'{total} import circle(s) among the files of a crate; move the shared items one floor down')
    sys.exit(1)
print(f'no import circles in {len(roots)} crates')
