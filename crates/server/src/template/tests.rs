use super::*;
use crate::store::User;
use crate::validate::FieldError;
use serde_json::json;
use streamspace_protocol::{Cpu, Memory, Resources};

fn input(value: serde_json::Value) -> TemplateInput {
    serde_json::from_value(value).expect("input parses")
}

fn field_of(value: serde_json::Value) -> String {
    input(value).validate().expect_err("must be refused").field
}

#[test]
fn minimal_template_gets_defaults() {
    let spec = input(json!({"name": "desktop", "image": "streamspace/desktop:local"}))
        .validate()
        .expect("valid");
    assert_eq!(spec.display_name, "desktop");
    assert_eq!(spec.ports[0].port, 5901);
    assert_eq!(spec.home_path, "/home/user");
    assert_eq!(spec.idle_timeout(), None);
    assert!(spec.allows_platform("docker"));
}

#[test]
fn web_ports_stand_alone_and_carry_a_readiness_path() {
    let ports = json!([
        {"name": "web", "port": 6080, "protocol": "http", "path": "/healthz"},
        {"name": "kasm", "port": 6901, "protocol": "https"},
        {"name": "vnc", "port": 5901, "protocol": "vnc"}
    ]);
    let spec = input(json!({"name": "web", "image": "streamspace/webvnc:local", "ports": ports}))
        .validate()
        .expect("web ports are valid, the first is primary");
    assert_eq!(spec.ports[0].ready_path(), "/healthz");
    assert_eq!(spec.ports[1].ready_path(), "/");
    let only_web = json!([{"name": "web", "port": 80, "protocol": "http"}]);
    assert!(
        input(json!({"name": "web", "image": "nginx", "ports": only_web}))
            .validate()
            .is_ok(),
        "a web app needs no VNC port"
    );
    for ports in [
        json!([{"name": "vnc", "port": 5901, "protocol": "vnc", "path": "/"}]),
        json!([{"name": "web", "port": 80, "protocol": "http", "path": "relative"}]),
        json!([{"name": "web", "port": 80, "protocol": "http", "path": "/a b"}]),
    ] {
        let refused = input(json!({"name": "web", "image": "nginx", "ports": ports}))
            .validate()
            .expect_err("refused");
        assert_eq!(refused.field, "ports[0].path");
    }
}

#[test]
fn an_audio_port_comes_after_the_screen_and_only_once() {
    let vnc = json!({"name": "vnc", "port": 5901, "protocol": "vnc"});
    let sound = json!({"name": "sound", "port": 4713, "protocol": "audio"});
    let other = json!({"name": "sound2", "port": 4714, "protocol": "audio"});
    let template =
        |ports| json!({"name": "d", "image": "streamspace/desktop:local", "ports": ports});
    let spec = input(template(json!([vnc, sound])))
        .validate()
        .expect("valid");
    assert_eq!(
        spec.ports[1].protocol,
        streamspace_protocol::PortProtocol::Audio
    );
    assert_eq!(field_of(template(json!([sound, vnc]))), "ports");
    assert_eq!(field_of(template(json!([vnc, sound, other]))), "ports");
    let mic = json!({"name": "mic", "port": 5912, "protocol": "microphone"});
    let mic2 = json!({"name": "mic2", "port": 5913, "protocol": "microphone"});
    let spec = input(template(json!([vnc, sound, mic])))
        .validate()
        .expect("valid");
    assert_eq!(
        spec.ports[2].protocol,
        streamspace_protocol::PortProtocol::Microphone
    );
    assert_eq!(field_of(template(json!([mic, vnc]))), "ports");
    assert_eq!(field_of(template(json!([vnc, mic, mic2]))), "ports");
}

#[test]
fn the_desktop_policy_is_validated_and_reaches_the_session() {
    let desktop = json!({"clipboard": "off", "file_transfer": "upload", "files_folder": "inbox/",
                         "max_upload": "1Mi", "recording": "required", "sharing": false, "microphone": false});
    let spec = input(json!({"name": "d", "image": "i", "desktop": desktop}))
        .validate()
        .expect("valid");
    assert_eq!(spec.desktop.files_folder, "inbox");
    assert_eq!(spec.desktop.max_upload, Memory(1 << 20));
    assert!(!spec.desktop.sharing);
    assert!(!spec.desktop.microphone);
    let owner = User {
        id: "u1".into(),
        username: "alice".into(),
        role: crate::store::Role::User,
        legacy_home: false,
    };
    let granted = spec.grant(SessionRequest::default()).expect("granted");
    let session = spec.session_spec(&"t".into(), &"s".into(), &owner, &granted);
    assert_eq!(session.desktop, spec.desktop);
    let bad = json!({"name": "d", "image": "i", "desktop": {"files_folder": "../etc"}});
    assert_eq!(field_of(bad), "desktop.files_folder");
    let unknown = json!({"name": "d", "image": "i", "desktop": {"clipboard": "sideways"}});
    assert!(serde_json::from_value::<TemplateInput>(unknown).is_err());
}

#[test]
fn bad_fields_are_named() {
    let base = |k: &str, v: serde_json::Value| {
        let mut t = json!({"name": "desktop", "image": "streamspace/desktop:local"});
        t[k] = v;
        t
    };
    assert_eq!(field_of(base("name", json!("Bad Name"))), "name");
    assert_eq!(field_of(base("image", json!("UPPER/case:1"))), "image");
    assert_eq!(field_of(base("image", json!("a b"))), "image");
    assert_eq!(
        field_of(base(
            "ports",
            json!([{"name": "vnc", "port": 70000, "protocol": "vnc"}])
        )),
        "ports[0].port"
    );
    assert_eq!(field_of(base("ports", json!([]))), "ports");
    assert_eq!(field_of(base("env", json!({"1BAD": "x"}))), "env");
    assert_eq!(
        field_of(base("idle_timeout", json!("soon"))),
        "idle_timeout"
    );
    assert_eq!(field_of(base("platforms", json!(["vmware"]))), "platforms");
    assert_eq!(field_of(base("home_path", json!("home"))), "home_path");
}

#[test]
fn idle_timeout_zero_means_never() {
    for never in ["0", "", "0s"] {
        let spec = input(json!({"name": "d", "image": "d:1", "idle_timeout": never}))
            .validate()
            .expect("valid");
        assert_eq!(spec.idle_timeout, None, "{never:?}");
    }
    let spec = input(json!({"name": "d", "image": "d:1", "idle_timeout": "30m"}))
        .validate()
        .expect("valid");
    assert_eq!(spec.idle_timeout(), Some(Duration::from_secs(1800)));
}

#[test]
fn valid_image_references() {
    for ok in [
        "streamspace/desktop:local",
        "debian",
        "registry.example.com:5000/team/app:1.2",
        "ghcr.io/x/y@sha256:0000000000000000000000000000000000000000000000000000000000000000",
    ] {
        assert!(check_image(ok).is_ok(), "{ok}");
    }
    for bad in [
        "",
        " debian",
        "debian:",
        "Debian",
        "a//b",
        "x:tag with space",
    ] {
        assert!(check_image(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn homes_are_keyed_by_ids_and_legacy_names_only_for_old_users() {
    let template = |name: &str| {
        input(json!({"name": name, "image": "d:1", "persistent_home": true}))
            .validate()
            .expect("valid")
    };
    let user = |id: &str, username: &str, legacy_home| User {
        id: id.into(),
        username: username.into(),
        role: crate::store::Role::User,
        legacy_home,
    };
    let home = |t: &TemplateSpec, template_id: &str, owner: &User| {
        let granted = t.grant(SessionRequest::default()).expect("granted");
        t.session_spec(&template_id.into(), &"s1".into(), owner, &granted)
            .home
            .expect("a home")
    };
    // Joined names would collide: alice + dev-desktop, alice-dev + desktop.
    let a = home(&template("dev-desktop"), "t1", &user("u1", "alice", true));
    let b = home(&template("desktop"), "t2", &user("u2", "alice-dev", true));
    assert_eq!(a.volume, "streamspace-home-u1-t1");
    assert_eq!(b.volume, "streamspace-home-u2-t2");
    assert_eq!(a.legacy, b.legacy, "the old names were ambiguous");
    assert_eq!(
        a.legacy.as_deref(),
        Some("streamspace-home-alice-dev-desktop")
    );
    // A user created after the upgrade never had an old-style home.
    let new = home(&template("desktop"), "t2", &user("u3", "alice-dev", false));
    assert_eq!(new.legacy, None);
}

fn template(value: serde_json::Value) -> TemplateSpec {
    let mut base = json!({"name": "desktop", "image": "d:1"});
    if let (Some(base), Some(extra)) = (base.as_object_mut(), value.as_object()) {
        base.extend(extra.clone());
    }
    input(base).validate().expect("valid")
}

fn refusal(t: &TemplateSpec, request: SessionRequest) -> FieldError {
    t.grant(request).expect_err("must be refused")
}

#[test]
fn users_get_at_most_what_the_template_allows() {
    let t = template(json!({"resources": {"cpu": "1", "memory": "1Gi"},
                            "max_resources": {"cpu": "2"}}));
    let ask = |cpu: &str, memory: Option<&str>| SessionRequest {
        resources: Some(Resources {
            cpu: Some(cpu.parse().expect("cpu")),
            memory: memory.map(|m| m.parse().expect("memory")),
            gpu: None,
        }),
        ..SessionRequest::default()
    };
    let granted = t.grant(ask("2", None)).expect("within the maximum");
    assert_eq!(granted.resources.cpu, Some(Cpu(2000)));
    assert_eq!(
        granted.resources.memory,
        Some(Memory(1 << 30)),
        "the template's"
    );
    assert_eq!(refusal(&t, ask("3", None)).field, "resources.cpu");
    // No maximum for memory: the template's own amount is the most.
    assert!(t.grant(ask("1", Some("512Mi"))).is_ok());
    let err = refusal(&t, ask("1", Some("2Gi")));
    assert_eq!(err.field, "resources.memory");
    assert!(err.message.contains("at most 1Gi"), "{}", err.message);
    // Neither set: users cannot choose it at all.
    let open = template(json!({}));
    assert_eq!(refusal(&open, ask("1", None)).field, "resources.cpu");
}

#[test]
fn users_set_only_the_variables_the_template_lists() {
    let t = template(json!({"env": {"PROXY": "http://proxy:3128", "LANG": "C"},
                            "secret_env": {"LICENSE": "s3cret"},
                            "user_env": ["LANG"]}));
    let env = |k: &str| SessionRequest {
        env: [(k.to_owned(), "x".to_owned())].into(),
        ..SessionRequest::default()
    };
    let err = refusal(&t, env("PROXY"));
    assert_eq!(err.field, "env.PROXY");
    assert!(
        err.message.contains("LANG"),
        "says what is allowed: {}",
        err.message
    );
    let granted = t.grant(env("LANG")).expect("allowed");
    let owner = User {
        id: "u".into(),
        username: "alice".into(),
        role: crate::store::Role::User,
        legacy_home: false,
    };
    let spec = t.session_spec(&"t".into(), &"s".into(), &owner, &granted);
    assert_eq!(spec.env["LANG"], "x", "the user's value");
    assert_eq!(spec.env["PROXY"], "http://proxy:3128", "the admin's value");
    assert_eq!(spec.env["LICENSE"], "s3cret", "the session gets the secret");
    // Nothing is allowed unless listed.
    assert_eq!(refusal(&template(json!({})), env("LANG")).field, "env.LANG");
}

#[test]
fn the_idle_timeout_is_the_templates_unless_it_lets_users_choose() {
    let ask = |text: &str| SessionRequest {
        idle_timeout: Some(text.to_owned()),
        ..SessionRequest::default()
    };
    let strict = template(json!({"idle_timeout": "30m"}));
    assert_eq!(refusal(&strict, ask("0")).field, "idle_timeout");
    let granted = strict.grant(SessionRequest::default()).expect("default");
    assert_eq!(granted.idle_timeout, Some(Duration::from_secs(1800)));
    let open = template(json!({"idle_timeout": "30m", "user_idle_timeout": true}));
    assert_eq!(open.grant(ask("0")).expect("never").idle_timeout, None);
    assert_eq!(refusal(&open, ask("soon")).field, "idle_timeout");
}

#[test]
fn confinement_and_secrets_are_validated() {
    let t = template(json!({"capabilities": ["chown", "CAP_SETUID", "CHOWN"], "pids_limit": 512}));
    assert_eq!(t.capabilities, ["CHOWN", "SETUID"]);
    assert_eq!(t.pids_limit, 512);
    assert_eq!(template(json!({})).pids_limit, DEFAULT_PIDS_LIMIT);
    let base = |k: &str, v: serde_json::Value| {
        let mut t = json!({"name": "desktop", "image": "d:1"});
        t[k] = v;
        t
    };
    assert_eq!(
        field_of(base("capabilities", json!(["FLY"]))),
        "capabilities[0]"
    );
    assert_eq!(field_of(base("pids_limit", json!(5))), "pids_limit");
    let clash = json!({"name": "d", "image": "d:1", "env": {"K": "1"}, "secret_env": {"K": "2"}});
    assert_eq!(field_of(clash), "secret_env.K");
    let secret_for_users = json!({"name": "d", "image": "d:1", "secret_env": {"K": "2"},
                                  "user_env": ["K"]});
    assert_eq!(field_of(secret_for_users), "user_env");
    let below = json!({"name": "d", "image": "d:1", "resources": {"cpu": "2"},
                       "max_resources": {"cpu": "1"}});
    assert_eq!(field_of(below), "max_resources.cpu");
}

#[test]
fn templates_stored_by_an_older_version_read_conservatively() {
    let old = json!({"name": "d", "display_name": "d", "description": "", "category": "Other",
        "icon": "", "image": "d:1", "ports": [], "env": {}, "resources": {},
        "persistent_home": false, "home_path": "/home/user", "idle_timeout": null,
        "platforms": []});
    let spec: TemplateSpec = serde_json::from_value(old).expect("an old template reads");
    assert_eq!(spec.pids_limit, DEFAULT_PIDS_LIMIT);
    assert!(spec.user_env.is_empty() && !spec.user_idle_timeout);
    assert!(spec.capabilities.is_empty());
    assert_eq!((spec.shm_size, spec.user.as_deref()), (None, None));
    assert!(!spec.read_only_root_filesystem && spec.volumes.is_empty());
    assert_eq!(spec.resources.gpu, None);
}

#[test]
fn users_do_not_see_the_environment() {
    let t = template(json!({"env": {"A": "1"}, "secret_env": {"B": "2"}}));
    let shown = serde_json::to_value(t.clone().for_users()).expect("json");
    assert_eq!(
        (shown["env"].clone(), shown["secret_env"].clone()),
        (json!({}), json!({}))
    );
    let admin = serde_json::to_value(t).expect("json");
    assert_eq!(admin["secret_env"], json!({"B": "2"}));
}

#[test]
fn warm_pools_are_bounded_and_homeless() {
    let with = |pool: serde_json::Value, home: bool| {
        input(json!({"name": "d", "image": "streamspace/desktop:local", "warm_pool": pool, "persistent_home": home}))
            .validate()
    };
    assert_eq!(with(json!(2), false).expect("valid").warm_pool, 2);
    assert_eq!(with(json!(0), true).expect("valid").warm_pool, 0);
    for (pool, home) in [(json!(21), false), (json!(-1), false), (json!(1), true)] {
        assert_eq!(with(pool, home).expect_err("refused").field, "warm_pool");
    }
}

fn with_registry_auth(auth: serde_json::Value) -> serde_json::Value {
    json!({"name": "private", "image": "registry.example.com/app:1", "registry_auth": auth})
}

#[test]
fn registry_passwords_are_write_only_and_kept_when_left_out() {
    let mut first = input(with_registry_auth(
        json!({"username": "robot", "password": "s3cret"}),
    ))
    .validate()
    .expect("valid");
    first
        .keep_registry_password(None)
        .expect("a new template gives one");
    let owner = User {
        id: "u1".into(),
        username: "alice".into(),
        role: crate::store::Role::User,
        legacy_home: false,
    };
    let granted = first.grant(SessionRequest::default()).expect("granted");
    let spec = first.session_spec(&"t".into(), &"s".into(), &owner, &granted);
    let sent = spec.registry_auth.expect("the agent gets the credentials");
    assert_eq!(
        (sent.username.as_str(), sent.password.as_str()),
        ("robot", "s3cret")
    );

    let shown = serde_json::to_string(&first.clone().without_passwords()).expect("json");
    assert!(
        shown.contains("robot") && !shown.contains("s3cret"),
        "{shown}"
    );
    assert!(first.clone().for_users().registry_auth.is_none());
    assert!(!format!("{first:?}").contains("s3cret"));

    // Replaced without the password: the stored one stays.
    let mut edited = input(with_registry_auth(json!({"username": "robot"})))
        .validate()
        .expect("valid");
    edited.keep_registry_password(Some(&first)).expect("kept");
    assert_eq!(edited.registry_auth, first.registry_auth);
    // ... but not for another username, nor for a new template.
    let mut renamed = input(with_registry_auth(json!({"username": "other"})))
        .validate()
        .expect("valid");
    let err = renamed
        .keep_registry_password(Some(&first))
        .expect_err("refused");
    assert_eq!(err.field, "registry_auth.password");
    let mut new = input(with_registry_auth(json!({"username": "robot"})))
        .validate()
        .expect("valid");
    assert!(new.keep_registry_password(None).is_err());
}

#[test]
fn bad_registry_credentials_are_named() {
    let cases = [
        (
            json!({"username": "", "password": "p"}),
            "registry_auth.username",
        ),
        (
            json!({"username": "a:b", "password": "p"}),
            "registry_auth.username",
        ),
        (
            json!({"username": "u", "password": ""}),
            "registry_auth.password",
        ),
        (
            json!({"username": "u", "password": "x".repeat(9000)}),
            "registry_auth.password",
        ),
        (
            json!({"username": "u", "password": "a\nb"}),
            "registry_auth.password",
        ),
    ];
    for (auth, field) in cases {
        assert_eq!(field_of(with_registry_auth(auth.clone())), field, "{auth}");
    }
    let unknown = serde_json::from_value::<TemplateInput>(with_registry_auth(
        json!({"username": "u", "password": "p", "email": "x"}),
    ));
    assert!(unknown.is_err(), "unknown fields are refused");
}
