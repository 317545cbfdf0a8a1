//! Unit tests of `notify`.

use super::*;

fn webhook_rule(url: &str) -> NotificationRule {
    NotificationRule {
        phases: vec!["FAILED".into()],
        slack: None,
        email: None,
        webhook: Some(WebhookChannel {
            url: url.into(),
            secret: "env:HOOK_SECRET".into(),
        }),
    }
}

fn email_rule(subject: &str) -> NotificationRule {
    NotificationRule {
        phases: vec!["FAILED".into(), "TIMED_OUT".into()],
        slack: None,
        email: Some(EmailChannel {
            to: vec!["team@example.com".into(), "oncall@example.com".into()],
            from: "aloft@example.com".into(),
            smtp: SmtpServer {
                host: "127.0.0.1".into(),
                port: Some(2525),
                tls: SmtpTls::None,
                username: None,
                password: None,
                ca_file: None,
            },
            subject: Some(subject.into()),
            body: None,
        }),
        webhook: None,
    }
}

#[test]
fn valid_rules_pass() {
    assert_eq!(
        webhook_rule("https://hooks.example.com/aloft?x=1").validate("r"),
        Ok(())
    );
    assert_eq!(webhook_rule("http://127.0.0.1:9000/hook").validate("r"), Ok(()));
    assert_eq!(email_rule("{{name}} {{ phase }}").validate("r"), Ok(()));
}

#[test]
fn malformed_urls_are_named() {
    for url in [
        "ftp://x",
        "hooks.example.com",
        "http://",
        "http://host:0/",
        "http://host:99999/",
        "http://a b/",
    ] {
        let error = webhook_rule(url).validate("lp").unwrap_err();
        assert!(error.to_string().contains("webhook.url"), "{url}: {error}");
    }
}

#[test]
fn unknown_phases_and_variables_are_named() {
    let mut rule = webhook_rule("https://x.example.com");
    rule.phases = vec!["FAILD".into()];
    let error = rule.validate("lp").unwrap_err();
    assert!(error.to_string().contains("unknown phase \"FAILD\""), "{error}");
    assert!(error.to_string().contains("TIMED_OUT"), "{error}");
    let error = email_rule("{{name}} {{colour}}").validate("lp").unwrap_err();
    assert!(
        error.to_string().contains("{{colour}}") && error.to_string().contains("email.subject"),
        "{error}"
    );
    let error = email_rule("{{name").validate("lp").unwrap_err();
    assert!(error.to_string().contains("unclosed"), "{error}");
}

#[test]
fn channels_and_secrets_are_checked() {
    let mut rule = webhook_rule("https://x.example.com");
    rule.slack = Some(SlackChannel {
        webhook_url: "env:SLACK".into(),
    });
    assert!(rule
        .validate("lp")
        .unwrap_err()
        .to_string()
        .contains("exactly one channel"));
    let slack = NotificationRule {
        phases: vec!["SUCCEEDED".into()],
        slack: Some(SlackChannel {
            webhook_url: "https://hooks.slack.com/services/T/B/X".into(),
        }),
        email: None,
        webhook: None,
    };
    let error = slack.validate("lp").unwrap_err();
    assert!(error.to_string().contains("not a secret reference"), "{error}");
    let mut email = email_rule("x");
    if let Some(channel) = email.email.as_mut() {
        channel.to = vec!["not-an-address".into()];
    }
    assert!(email.validate("lp").unwrap_err().to_string().contains("email.to"));
}

#[test]
fn templates_render_every_variable() {
    let context = MessageContext {
        project: "flowers".into(),
        domain: "production".into(),
        name: "run-1".into(),
        launch_plan: "daily@v1".into(),
        phase: "FAILED".into(),
        error: "node train failed".into(),
        duration_ms: 65_000,
        url: "http://console/x".into(),
        finished_at: 0,
    };
    let text = render(
        "{{project}}/{{domain}} {{name}} {{launch_plan}} {{phase}} {{error}} {{duration}} {{url}}",
        &context,
    );
    assert_eq!(
        text,
        "flowers/production run-1 daily@v1 FAILED node train failed 1m 05s http://console/x"
    );
}

#[test]
fn slack_messages_say_what_ended_how_and_where_to_look() {
    let context = MessageContext {
        project: "flowers".into(),
        domain: "production".into(),
        name: "run-7".into(),
        launch_plan: "nightly@v3".into(),
        phase: "FAILED".into(),
        error: "node train failed:\nout of memory".into(),
        duration_ms: 3_723_000,
        url: "https://aloft.example.com/x".into(),
        finished_at: 0,
    };
    assert_eq!(
        slack_text(&context),
        "*FAILED* flowers/production execution `run-7` (launch plan nightly@v3) after 1h 02m\n\
         >node train failed:\n>out of memory\n<https://aloft.example.com/x|Open the execution>"
    );
    let succeeded = MessageContext {
        phase: "SUCCEEDED".into(),
        error: String::new(),
        duration_ms: 850,
        ..context
    };
    assert!(
        !slack_text(&succeeded).contains("\n>"),
        "no error quote for a success"
    );
    assert!(slack_text(&succeeded).contains("after 850 ms"));
}

#[test]
fn delivery_ids_are_deterministic_and_distinct() {
    let a = delivery_id("execution/p/d/n#9", "launch_plan/0", "email:a@example.com");
    assert_eq!(
        a,
        delivery_id("execution/p/d/n#9", "launch_plan/0", "email:a@example.com")
    );
    assert_ne!(
        a,
        delivery_id("execution/p/d/n#9", "launch_plan/0", "email:b@example.com")
    );
    assert_ne!(
        a,
        delivery_id("execution/p/d/n#9", "launch_plan/1", "email:a@example.com")
    );
    assert_eq!(a.len(), 32);
}

#[test]
fn an_override_replaces_every_rule_and_empty_disables_all() {
    let lp = vec![webhook_rule("https://a.example.com")];
    let defaults = vec![email_rule("x")];
    assert_eq!(effective_rules(None, &lp, &defaults).len(), 2);
    assert!(effective_rules(Some(&[]), &lp, &defaults).is_empty());
    let own = vec![webhook_rule("https://b.example.com")];
    let rules = effective_rules(Some(&own), &lp, &defaults);
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].0, "execution/0");
}
