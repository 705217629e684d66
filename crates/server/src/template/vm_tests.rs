//! The rules of `vm.rs` through [`TemplateInput::validate`], as the API
//! meets them: what a libvirt template may say, and that neither kind of
//! template lands on the other kind of platform.

use super::runtime_tests::{owner, validate_on};
use super::*;
use crate::validate::FieldError;
use serde_json::json;
use streamspace_protocol::{Firmware, Memory, PortProtocol};

const DISK: &str = "/var/lib/streamspace/vm/demo.qcow2";

/// A valid VM template with `extra` on top.
fn vm_template(extra: serde_json::Value) -> Result<TemplateSpec, FieldError> {
    let base = json!({
        "name": "vm-demo", "image": DISK, "platforms": ["libvirt"],
        "resources": {"cpu": "1", "memory": "256Mi"}
    });
    validate_on(base, extra)
}

fn refused(extra: serde_json::Value) -> (String, String) {
    let err = vm_template(extra).expect_err("must be refused");
    (err.field, err.message)
}

#[test]
fn a_libvirt_template_gets_the_vm_defaults_and_its_vnc_display() {
    let spec = vm_template(json!({})).expect("valid");
    let vm = spec.vm.expect("a VM template stores its vm section");
    assert_eq!(vm.firmware, Firmware::Bios);
    assert_eq!(vm.home_size, None);
    assert_eq!(spec.ports.len(), 1);
    assert_eq!(
        (spec.ports[0].port, spec.ports[0].protocol),
        (5900, PortProtocol::Vnc)
    );
    let spec = vm_template(json!({
        "persistent_home": true,
        "vm": {"firmware": "uefi", "home_size": "256Mi"},
        "ports": [{"name": "vnc", "port": 5900, "protocol": "vnc"}]
    }))
    .expect("valid");
    let vm = spec.vm.expect("kept");
    assert_eq!(vm.firmware, Firmware::Uefi);
    assert_eq!(vm.home_size, Some(Memory(256 << 20)));
}

#[test]
fn libvirt_stands_alone_in_platforms() {
    for platforms in [
        json!(["libvirt", "docker"]),
        json!(["kubernetes", "libvirt"]),
    ] {
        let (field, message) = refused(json!({ "platforms": platforms }));
        assert_eq!(field, "platforms");
        assert!(message.contains("[\"libvirt\"] alone"), "{message}");
    }
}

#[test]
fn a_vm_section_needs_the_libvirt_platform() {
    for platforms in [json!([]), json!(["docker"])] {
        let err = serde_json::from_value::<TemplateInput>(json!({
            "name": "d", "image": "d:1", "platforms": platforms, "vm": {"firmware": "uefi"}
        }))
        .expect("parses")
        .validate()
        .expect_err("refused");
        assert_eq!(err.field, "vm");
        assert!(err.message.contains("[\"libvirt\"]"), "{}", err.message);
    }
}

#[test]
fn a_base_disk_is_an_absolute_path_or_a_pool_volume() {
    for ok in [
        DISK,
        "/srv/vm images/Win 11.qcow2",
        "default/demo.qcow2",
        "vm-pool/base_2024+1.img",
    ] {
        assert!(vm_template(json!({ "image": ok })).is_ok(), "{ok}");
    }
    for bad in [
        "",
        "demo.qcow2",
        "/var/lib/../../etc/shadow",
        "/var/lib/./x.qcow2",
        "/var/lib//x.qcow2",
        "/var/lib/vm/",
        "/var/lib/vm/x\0.qcow2",
        "/var/lib/vm/x\n.qcow2",
        " /var/lib/x.qcow2",
        "pool/../x",
        "pool/.hidden",
        "-pool/x",
        "pool/sub/x",
        "pool/x;rm -rf",
        "streamspace/desktop:local",
    ] {
        let (field, message) = refused(json!({ "image": bad }));
        assert_eq!(field, "image", "{bad:?}");
        assert!(message.contains("pool/volume"), "{bad:?}: {message}");
    }
    let long = format!("/{}", "a".repeat(1024));
    assert_eq!(refused(json!({ "image": long })).0, "image");
}

#[test]
fn container_templates_still_need_an_image_reference() {
    for platforms in [json!([]), json!(["docker"]), json!(["kubernetes"])] {
        let err = serde_json::from_value::<TemplateInput>(json!({
            "name": "d", "image": DISK, "platforms": platforms
        }))
        .expect("parses")
        .validate()
        .expect_err("a disk path is no image reference");
        assert_eq!(err.field, "image");
        assert!(
            err.message.contains("streamspace/desktop:local"),
            "{}",
            err.message
        );
    }
}

#[test]
fn the_home_disk_size_is_bounded_and_needs_a_home() {
    for (size, ok) in [
        ("64Mi", true),
        ("1Ti", true),
        ("63Mi", false),
        ("2Ti", false),
    ] {
        let result = vm_template(json!({"persistent_home": true, "vm": {"home_size": size}}));
        match ok {
            true => assert!(result.is_ok(), "{size}"),
            false => {
                let err = result.expect_err(size);
                assert_eq!(err.field, "vm.home_size");
                assert!(err.message.contains("64Mi to 1Ti"), "{}", err.message);
            }
        }
    }
    let (field, message) = refused(json!({"vm": {"home_size": "1Gi"}}));
    assert_eq!(field, "vm.home_size");
    assert!(message.contains("persistent_home"), "{message}");
}

#[test]
fn container_only_fields_are_refused_on_a_vm() {
    let cases = [
        (json!({"shm_size": "1Gi"}), "shm_size"),
        (json!({"user": "1000"}), "user"),
        (json!({"capabilities": ["CHOWN"]}), "capabilities"),
        (json!({"pids_limit": 4096}), "pids_limit"),
        (
            json!({"read_only_root_filesystem": true}),
            "read_only_root_filesystem",
        ),
        (
            json!({"volumes": [{"source": "data", "path": "/data"}]}),
            "volumes",
        ),
        (
            json!({"registry_auth": {"username": "u", "password": "p"}}),
            "registry_auth",
        ),
        (json!({"env": {"A": "1"}}), "env"),
        (json!({"secret_env": {"A": "1"}}), "secret_env"),
        (json!({"user_env": ["TZ"]}), "user_env"),
        (
            json!({"resources": {"memory": "1Gi", "gpu": 1}}),
            "resources.gpu",
        ),
        (json!({"max_resources": {"gpu": 1}}), "max_resources.gpu"),
    ];
    for (extra, expected) in cases {
        let (field, message) = refused(extra);
        assert_eq!(field, expected);
        assert!(message.contains("remove it"), "{expected}: {message}");
    }
    let (field, _) = refused(json!({"desktop": {"file_transfer": "upload"}}));
    assert_eq!(field, "desktop.file_transfer");
    let spec = vm_template(json!({"desktop": {"clipboard": "off"}})).expect("valid");
    assert_eq!(
        spec.desktop.file_transfer,
        streamspace_protocol::FileTransferPolicy::None,
        "no files for a VM, unasked"
    );
    // A warm pool is the control plane's, and works for VMs too.
    assert!(vm_template(json!({"warm_pool": 1})).is_ok());
}

#[test]
fn a_vm_has_a_memory_size_whole_vcpus_and_one_vnc_port() {
    let (field, _) = refused(json!({"resources": {"cpu": "1"}}));
    assert_eq!(field, "resources.memory");
    let (field, _) = refused(json!({"resources": {"memory": "32Mi"}}));
    assert_eq!(field, "resources.memory");
    let (field, message) = refused(json!({"resources": {"cpu": "500m", "memory": "1Gi"}}));
    assert_eq!(field, "resources.cpu");
    assert!(message.contains("whole vCPUs"), "{message}");
    assert!(vm_template(json!({"resources": {"memory": "1Gi"}})).is_ok());
    for ports in [
        json!([{"name": "web", "port": 80, "protocol": "http"}]),
        json!([{"name": "vnc", "port": 5900, "protocol": "vnc"},
               {"name": "audio", "port": 5911, "protocol": "audio"}]),
    ] {
        let (field, message) = refused(json!({ "ports": ports }));
        assert_eq!(field, "ports");
        assert!(message.contains("VNC display"), "{message}");
    }
}

#[test]
fn any_platform_means_any_container_platform() {
    let any = serde_json::from_value::<TemplateInput>(json!({"name": "d", "image": "d:1"}))
        .expect("parses")
        .validate()
        .expect("valid");
    assert!(any.allows_platform(DOCKER) && any.allows_platform(KUBERNETES));
    assert!(
        !any.allows_platform(LIBVIRT),
        "a container image cannot boot"
    );
    assert_eq!(any.runs_on(), ["docker", "kubernetes"]);
    let vm = vm_template(json!({})).expect("valid");
    assert!(vm.allows_platform(LIBVIRT));
    assert!(!vm.allows_platform(DOCKER) && !vm.allows_platform(KUBERNETES));
}

#[test]
fn a_vm_session_spec_carries_its_vm_section() {
    let spec = vm_template(json!({
        "persistent_home": true, "vm": {"firmware": "uefi", "home_size": "2Gi"}
    }))
    .expect("valid");
    let granted = spec.grant(SessionRequest::default()).expect("granted");
    let session = spec.session_spec(&"t1".into(), &"s1".into(), &owner(), &granted);
    assert_eq!(session.image, DISK);
    assert_eq!(session.vm.firmware, Firmware::Uefi);
    assert_eq!(session.vm.home_size(), Memory(2 << 30));
    assert_eq!(session.resources.memory, Some(Memory(256 << 20)));
    assert!(session.home.is_some());
}
