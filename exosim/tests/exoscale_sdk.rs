//! exosim driven by Exoscale's official Python SDK (PyPI `exoscale`, in the venv that
//! scripts/install-deps makes), so that it can never agree only with baton's own client.

#[path = "../../tests/common/exosim.rs"]
mod sim;

use std::path::PathBuf;
use std::process::Command;

use serde_json::{Value, json};
use sim::{Exosim, KEY, SECRET};

/// The venv's python: `BATON_EXOSCALE_SDK_VENV`, or where scripts/install-deps puts it.
fn sdk_python() -> PathBuf {
    let venv = std::env::var_os("BATON_EXOSCALE_SDK_VENV").map_or_else(
        || PathBuf::from("/var/tmp/baton-exoscale-sdk"),
        PathBuf::from,
    );
    let python = venv.join("bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run scripts/install-deps (it makes the venv with Exoscale's SDK)",
        python.display()
    );
    python
}

#[tokio::test]
async fn the_official_sdk_gets_what_the_spec_promises() {
    // Operations settle at once: the SDK polls no faster than every 3 s.
    let sim = Exosim::start(&["--operation-delay", "0ms"]);
    let out = Command::new(sdk_python())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/drive.py"))
        .env("EXOSIM_URL", &sim.url)
        .env("EXOSCALE_API_KEY", KEY)
        .env("EXOSCALE_API_SECRET", SECRET)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the SDK failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    let eip_holders = seen["holders"].as_array().unwrap().len();
    assert_eq!(
        seen,
        json!({
            "zone_endpoint": sim.url,
            "debian_templates": ["Linux Debian 12 (Bookworm) 64-bit", "Linux Debian 13 (Trixie) 64-bit"],
            "ubuntu_templates": 1,
            "public_security_groups": 0,
            "ssh_keys": ["sdk-key"],
            "instance_state": "running",
            "by_label": ["sdk-1"],
            "by_manager": 0,
            "holders": seen["holders"],
            "holders_after_detach": 0,
            "blank_parameter_status": 200,
            "bad_id": 400,
            "bad_enum": 400,
            "instances_left": 0,
            "ssh_keys_left": 0,
        })
    );
    assert_eq!(eip_holders, 1);
    let state = sim.state().await;
    // The two refusals above are the only requests off the spec; every answer was on it.
    let violations: Vec<&str> = state["violations"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(violations.len(), 2, "{violations:#?}");
    assert!(
        violations
            .iter()
            .all(|v| v.contains("parameters do not match")),
        "{violations:#?}"
    );
    assert_eq!(state["calls"]["refused-unsigned"], Value::Null, "{state}");
}
