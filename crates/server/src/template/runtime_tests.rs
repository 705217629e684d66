//! The rules of `runtime.rs` (shm, user, read-only root, volumes, GPUs),
//! through [`TemplateInput::validate`] and [`TemplateSpec::grant`] as the
//! API meets them.

use super::runtime::CLIPBOARD_ENV;
use super::*;
use crate::validate::FieldError;
use serde_json::json;
use streamspace_protocol::{Memory, Resources};

fn validate(extra: serde_json::Value) -> Result<TemplateSpec, FieldError> {
    validate_on(json!({"name": "desktop", "image": "d:1"}), extra)
}

/// `base` with `extra`'s fields on top, validated.
pub(super) fn validate_on(
    mut t: serde_json::Value,
    extra: serde_json::Value,
) -> Result<TemplateSpec, FieldError> {
    if let (Some(t), Some(extra)) = (t.as_object_mut(), extra.as_object()) {
        t.extend(extra.clone());
    }
    serde_json::from_value::<TemplateInput>(t)
        .expect("input parses")
        .validate()
}

/// The field a refusal names, with its message.
fn refused(extra: serde_json::Value) -> (String, String) {
    let err = validate(extra).expect_err("must be refused");
    (err.field, err.message)
}

pub(super) fn owner() -> User {
    User {
        id: "u1".into(),
        username: "alice".into(),
        role: crate::store::Role::User,
        legacy_home: false,
    }
}

#[test]
fn the_runtime_fields_reach_the_session_spec() {
    let t = validate(json!({
        "shm_size": "1Gi", "user": "1000:1000", "read_only_root_filesystem": true,
        "resources": {"memory": "2Gi", "gpu": 1},
        "volumes": [{"source": "datasets", "path": "/data/"},
                    {"source": "scratch", "path": "/scratch", "read_only": false}]
    }))
    .expect("valid");
    let granted = t.grant(SessionRequest::default()).expect("granted");
    let spec = t.session_spec(&"t1".into(), &"s1".into(), &owner(), &granted);
    assert_eq!(spec.shm_size, Some(Memory(1 << 30)));
    assert_eq!(spec.security.user.as_deref(), Some("1000:1000"));
    assert!(spec.security.read_only_root_filesystem);
    assert_eq!(spec.resources.gpu, Some(1));
    assert_eq!(spec.volumes.len(), 2);
    assert_eq!(
        (spec.volumes[0].path.as_str(), spec.volumes[0].read_only),
        ("/data", true),
        "written back without the trailing slash, read-only by default"
    );
    assert!(!spec.volumes[1].read_only);
}

#[test]
fn shm_is_bounded_by_the_memory_limit_or_64gi() {
    assert!(validate(json!({"shm_size": "64Gi"})).is_ok());
    let (field, message) = refused(json!({"shm_size": "65Gi"}));
    assert_eq!(field, "shm_size");
    assert!(message.contains("64Gi"), "{message}");
    let (field, message) = refused(json!({"shm_size": "2Gi", "resources": {"memory": "1Gi"}}));
    assert_eq!(field, "shm_size");
    assert!(message.contains("resources.memory"), "{message}");
    assert!(validate(json!({"shm_size": "1Gi", "resources": {"memory": "1Gi"}})).is_ok());
}

#[test]
fn a_user_may_not_ask_for_less_memory_than_the_shm() {
    let t = validate(json!({"shm_size": "1Gi", "resources": {"memory": "2Gi"}})).expect("valid");
    let ask = |memory: &str| SessionRequest {
        resources: Some(Resources {
            memory: Some(memory.parse().expect("memory")),
            ..Resources::default()
        }),
        ..SessionRequest::default()
    };
    let err = t.grant(ask("512Mi")).expect_err("below the shm");
    assert_eq!(err.field, "resources.memory");
    assert!(err.message.contains("shm_size"), "{}", err.message);
    assert!(t.grant(ask("1Gi")).is_ok());
}

#[test]
fn users_are_ids_or_names_and_names_never_on_kubernetes_alone() {
    for ok in [
        "1000",
        "1000:1000",
        "0",
        "app",
        "app:staff",
        "_svc",
        "app:100",
    ] {
        assert!(validate(json!({"user": ok})).is_ok(), "{ok}");
    }
    for bad in [
        "",
        "App",
        "1000:",
        ":1000",
        "a b",
        "1:2:3",
        "-1",
        "x".repeat(33).as_str(),
    ] {
        assert_eq!(refused(json!({"user": bad})).0, "user", "{bad:?}");
    }
    let (field, message) = refused(json!({"user": "app", "platforms": ["kubernetes"]}));
    assert_eq!(field, "user");
    assert!(message.contains("numeric"), "{message}");
    assert!(validate(json!({"user": "1000:1000", "platforms": ["kubernetes"]})).is_ok());
    assert!(validate(json!({"user": "app", "platforms": ["docker", "kubernetes"]})).is_ok());
}

#[test]
fn volume_paths_are_absolute_and_apart() {
    let volumes = |list: serde_json::Value| json!({"volumes": list, "persistent_home": true});
    let one = |source: &str, path: &str| volumes(json!([{"source": source, "path": path}]));
    for (path, why) in [
        ("data", "absolute"),
        ("/", "root"),
        ("//", "root"),
        ("/data/../etc", ".."),
        ("/a/./b", "'.'"),
        ("/a:b", "':'"),
    ] {
        let (field, message) = refused(one("datasets", path));
        assert_eq!(field, "volumes[0].path", "{path}");
        assert!(message.contains(why), "{path}: {message}");
    }
    for overlapping in ["/home/user", "/home", "/home/user/data", "/proc/x", "/dev"] {
        let (field, message) = refused(one("datasets", overlapping));
        assert_eq!(field, "volumes[0].path", "{overlapping}");
        assert!(message.contains("overlaps"), "{message}");
    }
    assert!(
        validate(one("datasets", "/home/username")).is_ok(),
        "not inside /home/user"
    );
    let two = volumes(json!([{"source": "a", "path": "/data"},
                             {"source": "b", "path": "/data/more"}]));
    let (field, message) = refused(two);
    assert_eq!(field, "volumes[1].path");
    assert!(message.contains("another volume"), "{message}");
    let scratch = json!({"read_only_root_filesystem": true,
                         "volumes": [{"source": "a", "path": "/tmp"}]});
    assert_eq!(refused(scratch).0, "volumes[0].path");
    assert!(validate(json!({"volumes": [{"source": "a", "path": "/tmp"}]})).is_ok());
}

#[test]
fn volume_sources_are_names_never_homes_and_at_most_16() {
    let one = |source: &str| json!({"volumes": [{"source": source, "path": "/data"}]});
    for bad in ["", "Data", "a_b", "-a", "../x"] {
        assert_eq!(refused(one(bad)).0, "volumes[0].source", "{bad:?}");
    }
    let (field, message) = refused(one("streamspace-home-u1-t1"));
    assert_eq!(field, "volumes[0].source");
    assert!(message.contains("home"), "{message}");
    let many: Vec<_> = (0..17)
        .map(|i| json!({"source": format!("v{i}"), "path": format!("/v{i}")}))
        .collect();
    assert_eq!(refused(json!({ "volumes": many })).0, "volumes");
    let sixteen: Vec<_> = (0..16)
        .map(|i| json!({"source": format!("v{i}"), "path": format!("/v{i}")}))
        .collect();
    assert!(validate(json!({ "volumes": sixteen })).is_ok());
    let unknown = json!({"name": "d", "image": "d:1",
                         "volumes": [{"source": "a", "path": "/a", "mode": "rw"}]});
    assert!(serde_json::from_value::<TemplateInput>(unknown).is_err());
}

#[test]
fn gpus_are_bounded_and_users_ask_up_to_the_maximum() {
    assert_eq!(
        refused(json!({"resources": {"gpu": 17}})).0,
        "resources.gpu"
    );
    assert_eq!(
        refused(json!({"max_resources": {"gpu": 99}})).0,
        "max_resources.gpu"
    );
    let below = json!({"resources": {"gpu": 2}, "max_resources": {"gpu": 1}});
    assert_eq!(refused(below).0, "max_resources.gpu");
    assert_eq!(
        validate(json!({"resources": {"gpu": 0}}))
            .expect("valid")
            .resources
            .gpu,
        None
    );
    let t = validate(json!({"resources": {"gpu": 1}, "max_resources": {"gpu": 4}})).expect("valid");
    let ask = |gpu: u32| SessionRequest {
        resources: Some(Resources {
            gpu: Some(gpu),
            ..Resources::default()
        }),
        ..SessionRequest::default()
    };
    assert_eq!(t.grant(ask(4)).expect("within").resources.gpu, Some(4));
    let err = t.grant(ask(5)).expect_err("over the maximum");
    assert_eq!(err.field, "resources.gpu");
    assert!(err.message.contains("at most 4"), "{}", err.message);
    let granted = t.grant(SessionRequest::default()).expect("default");
    assert_eq!(granted.resources.gpu, Some(1), "the template's own");
    let none = validate(json!({})).expect("valid");
    assert_eq!(
        none.grant(ask(1)).expect_err("no maximum").field,
        "resources.gpu"
    );
}

#[test]
fn the_clipboard_policy_reaches_the_image_and_nobody_overrides_it() {
    for (policy, value) in [
        (None, "both"),
        (Some("to_session"), "to_session"),
        (Some("from_session"), "from_session"),
        (Some("off"), "off"),
    ] {
        let desktop = policy.map_or(json!({}), |p| json!({"clipboard": p}));
        let t = validate(json!({"desktop": desktop, "env": {"LANG": "C.UTF-8"}})).expect("valid");
        let granted = t.grant(SessionRequest::default()).expect("granted");
        let spec = t.session_spec(&"t1".into(), &"s1".into(), &owner(), &granted);
        assert_eq!(spec.env.get(CLIPBOARD_ENV).map(String::as_str), Some(value));
        assert_eq!(spec.env.get("LANG").map(String::as_str), Some("C.UTF-8"));
    }
    for (extra, field) in [
        (
            json!({"env": {CLIPBOARD_ENV: "both"}}),
            "env.STREAMSPACE_CLIPBOARD",
        ),
        (
            json!({"secret_env": {CLIPBOARD_ENV: "both"}}),
            "secret_env.STREAMSPACE_CLIPBOARD",
        ),
        (
            json!({"user_env": [CLIPBOARD_ENV]}),
            "user_env.STREAMSPACE_CLIPBOARD",
        ),
    ] {
        let (refused_field, message) = refused(extra);
        assert_eq!(refused_field, field);
        assert!(message.contains("desktop.clipboard"), "{message}");
    }
}
