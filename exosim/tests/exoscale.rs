//! The Exoscale client against exosim, both held to Exoscale's OpenAPI spec.

// The same process harness as baton's own tests use.
#[path = "../../tests/common/exosim.rs"]
mod sim;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use baton::cloud::exoscale::{Credentials, signing};
use baton::cloud::{Cloud, CloudError, InstanceSpec, RegisterByUrl};
use serde_json::{Value, json};
use sim::*;

fn labels(generation: u32) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("baton.site".to_string(), "blog".to_string()),
        ("baton.generation".to_string(), generation.to_string()),
    ])
}

fn spec(generation: u32) -> InstanceSpec {
    InstanceSpec {
        name: format!("blog-{generation}"),
        labels: labels(generation),
        template: "Linux Debian 12 (Bookworm) 64-bit".into(),
        instance_type: "standard.small".into(),
        disk_gb: 20,
        security_groups: vec!["web".into()],
        ssh_key: None,
        user_data: baton::cloudinit::encode("#cloud-config\nruncmd: [[true]]\n")
            .unwrap()
            .to_string(),
        member: 0,
    }
}

const EIP: &str = "203.0.113.10";

fn eip() -> IpAddr {
    EIP.parse().unwrap()
}

async fn assert_conformant(sim: &Exosim) {
    let state = sim.state().await;
    assert_eq!(
        state["violations"],
        json!([]),
        "requests or answers off the spec"
    );
}

#[tokio::test]
async fn every_operation_against_the_simulator() {
    let sim = Exosim::start(&[]);
    let cloud = sim.client();

    let key = baton::identity::ssh::generate_key("provisioning").unwrap();
    let public = baton::identity::ssh::public_openssh(key.public_key()).unwrap();
    cloud
        .register_ssh_key("baton-blog-1", &public)
        .await
        .unwrap();
    cloud
        .register_ssh_key("baton-blog-1", &public)
        .await
        .expect("registering the same key twice is success");
    let keys = cloud.list_ssh_keys().await.unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(
        Some(keys[0].fingerprint.clone()),
        baton::cloud::exoscale::wire::ssh_key_fingerprint(&public)
    );
    let other = baton::identity::ssh::generate_key("other").unwrap();
    let err = cloud
        .register_ssh_key(
            "baton-blog-1",
            &baton::identity::ssh::public_openssh(other.public_key()).unwrap(),
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("already exists with another public key"),
        "{err}"
    );

    let mut s = spec(1);
    s.ssh_key = Some("baton-blog-1".into());
    let one = cloud.create_instance(&s).await.unwrap();
    assert_eq!(one.name, "blog-1");
    assert_eq!(one.labels, labels(1));
    let one = cloud
        .wait_running(&one.id, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(one.state, "running");
    assert!(one.public_ip.is_some());
    let again = cloud.create_instance(&s).await.unwrap();
    assert_eq!(
        again.id, one.id,
        "a second create with the same labels finds the first"
    );
    let two = cloud.create_instance(&spec(2)).await.unwrap();
    assert_eq!(
        cloud
            .list_instances(&labels(2))
            .await
            .unwrap()
            .iter()
            .map(|i| &i.id)
            .collect::<Vec<_>>(),
        [&two.id]
    );
    let site = BTreeMap::from([("baton.site".to_string(), "blog".to_string())]);
    assert_eq!(cloud.list_instances(&site).await.unwrap().len(), 2);

    // Elastic IP: attachable to several instances at once, and found by ip-address.
    let e = cloud.find_elastic_ip(eip()).await.unwrap();
    cloud.attach_elastic_ip(&e.id, &one.id).await.unwrap();
    cloud
        .attach_elastic_ip(&e.id, &one.id)
        .await
        .expect("attaching twice is success");
    cloud.attach_elastic_ip(&e.id, &two.id).await.unwrap();
    let mut holders: Vec<String> = cloud
        .instances_with_ip(eip())
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect();
    holders.sort();
    let mut both = vec![one.id.clone(), two.id.clone()];
    both.sort();
    assert_eq!(holders, both);
    assert_eq!(
        cloud
            .get_instance(&one.id)
            .await
            .unwrap()
            .unwrap()
            .elastic_ips,
        std::slice::from_ref(&e.id)
    );
    cloud.detach_elastic_ip(&e.id, &one.id).await.unwrap();
    cloud
        .detach_elastic_ip(&e.id, &one.id)
        .await
        .expect("detaching twice is success");
    let holders: Vec<String> = cloud
        .instances_with_ip(eip())
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(holders, std::slice::from_ref(&two.id));
    let by_own_ip = cloud
        .instances_with_ip(one.public_ip.unwrap())
        .await
        .unwrap();
    assert_eq!(
        by_own_ip.iter().map(|i| &i.id).collect::<Vec<_>>(),
        [&one.id]
    );

    // Deletes: gone is gone, twice is fine, and the address lets go.
    cloud.delete_instance(&two.id).await.unwrap();
    cloud
        .delete_instance(&two.id)
        .await
        .expect("deleting twice is success");
    assert_eq!(cloud.get_instance(&two.id).await.unwrap(), None);
    assert!(cloud.instances_with_ip(eip()).await.unwrap().is_empty());
    cloud.delete_instance(&one.id).await.unwrap();
    cloud.delete_ssh_key("baton-blog-1").await.unwrap();
    cloud
        .delete_ssh_key("baton-blog-1")
        .await
        .expect("deleting twice is success");
    assert!(cloud.list_ssh_keys().await.unwrap().is_empty());

    let state = sim.state().await;
    assert_eq!(state["instances"], json!([]));
    assert_conformant(&sim).await;
}

/// A signed request outside the client, to show the simulator's checks can fail.
async fn raw(sim: &Exosim, method: &str, path: &str, body: &Value, secret: &str) -> (u16, Value) {
    let bytes = serde_json::to_vec(body).unwrap();
    let full = format!("/v2{path}");
    let expires = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 300;
    let auth = signing::authorization(KEY, secret, method, &full, &[], &bytes, expires);
    let r = reqwest::Client::new()
        .request(method.parse().unwrap(), format!("{}{path}", sim.url))
        .header("Authorization", auth)
        .header("Content-Type", "application/json")
        .body(bytes)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn requests_off_the_spec_are_refused_and_recorded() {
    let sim = Exosim::start(&[]);
    let (status, body) = raw(
        &sim,
        "POST",
        "/instance",
        &json!({"name": "x", "disk-size": 5}),
        SECRET,
    )
    .await;
    assert_eq!(status, 400);
    let msg = body["message"].as_str().unwrap();
    assert!(
        msg.contains("disk-size") && msg.contains("template"),
        "{msg}"
    );
    let violations = sim.state().await["violations"].clone();
    assert_eq!(violations.as_array().unwrap().len(), 1, "{violations}");
    let (status, _) = raw(
        &sim,
        "PUT",
        "/elastic-ip/x:attach",
        &json!({"instance": "not-an-object"}),
        SECRET,
    )
    .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn instances_go_from_starting_to_running() {
    let sim = Exosim::start(&["--operation-delay", "600ms"]);
    let cloud = sim.client();
    let creating = tokio::spawn(async move {
        sim.client()
            .create_instance(&spec(1))
            .await
            .map(|i| (i, sim))
    });
    let started = Instant::now();
    let seen = loop {
        let list = cloud.list_instances(&labels(1)).await.unwrap();
        if let Some(i) = list.into_iter().next() {
            break i;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the instance never appeared"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(seen.state, "starting");
    let (created, sim) = creating.await.unwrap().unwrap();
    assert_eq!(created.state, "running");
    assert_conformant(&sim).await;
}

#[tokio::test]
async fn transient_faults_are_retried() {
    let sim = Exosim::start(&[
        "--fault",
        "list-templates:1:503",
        "--fault",
        "list-instance-types:1:500",
        "--fault",
        "get-operation:1:502",
        "--fault",
        "get-instance:1:drop",
        "--fault",
        "list-elastic-ips:1:429",
    ]);
    let cloud = sim.client();
    let started = Instant::now();
    let i = cloud.create_instance(&spec(1)).await.unwrap();
    assert!(cloud.get_instance(&i.id).await.unwrap().is_some());
    let e = cloud.find_elastic_ip(eip()).await.unwrap();
    // 429 came with Retry-After: 1, and the client waited for it.
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After was not honoured"
    );
    assert_eq!(e.ip, eip());
    let calls = sim.state().await["calls"].clone();
    for op in ["list-templates", "list-instance-types", "list-elastic-ips"] {
        assert_eq!(calls[op], 2, "{op}: {calls}");
    }
    assert!(calls["get-operation"].as_u64().unwrap() >= 2, "{calls}");
    assert_eq!(sim.state().await["instances"].as_array().unwrap().len(), 1);
    assert_conformant(&sim).await;
}

#[tokio::test]
async fn retries_are_bounded_and_501_is_final() {
    let faults: Vec<String> = (1..=10)
        .map(|n| format!("list-elastic-ips:{n}:500"))
        .collect();
    let mut args = vec!["--fault", "list-ssh-keys:1:501"];
    for f in &faults {
        args.extend(["--fault", f.as_str()]);
    }
    let sim = Exosim::start(&args);
    let cloud = sim.client();
    let err = cloud.list_ssh_keys().await.unwrap_err();
    assert!(matches!(err, CloudError::Http { status: 501, .. }), "{err}");
    let err = cloud.list_elastic_ips().await.unwrap_err();
    assert!(
        matches!(err, CloudError::GaveUp { attempts: 5, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("HTTP 500"), "{err}");
    let calls = sim.state().await["calls"].clone();
    assert_eq!(calls["list-ssh-keys"], 1);
    assert_eq!(calls["list-elastic-ips"], 5);
}

#[tokio::test]
async fn a_create_whose_answer_is_lost_never_makes_a_second_instance() {
    // The instance is created, then the connection drops before the answer arrives.
    let sim = Exosim::start(&["--fault", "create-instance:1:drop"]);
    let cloud = sim.client();
    let i = cloud.create_instance(&spec(1)).await.unwrap();
    let state = sim.state().await;
    assert_eq!(state["instances"].as_array().unwrap().len(), 1, "{state}");
    assert_eq!(state["instances"][0]["id"], json!(i.id));
    assert_eq!(
        state["calls"]["create-instance"], 1,
        "the create was sent again"
    );

    // A 503 before anything happened: retried, still one instance.
    sim.config(json!({"clear": true, "faults": ["create-instance:1:503"]}))
        .await;
    let j = cloud.create_instance(&spec(2)).await.unwrap();
    let state = sim.state().await;
    assert_eq!(state["instances"].as_array().unwrap().len(), 2);
    assert_eq!(state["calls"]["create-instance"], 2);
    assert_ne!(i.id, j.id);
    assert_conformant(&sim).await;
}

#[tokio::test]
async fn a_failed_operation_carries_its_reason() {
    let sim = Exosim::start(&["--fault", "create-instance:1:fail"]);
    let err = sim.client().create_instance(&spec(1)).await.unwrap_err();
    match &err {
        CloudError::OperationFailed {
            reason,
            message,
            command,
            ..
        } => {
            assert_eq!(reason, "fault");
            assert_eq!(command, "create-instance");
            assert!(message.contains("injected operation failure"), "{message}");
        }
        other => panic!("expected an operation failure, got {other}"),
    }
    assert_eq!(sim.state().await["instances"], json!([]));
}

#[tokio::test]
async fn names_that_do_not_resolve_list_what_exists() {
    let sim = Exosim::start(&[]);
    let refused = |change: fn(&mut InstanceSpec)| {
        let mut s = spec(1);
        change(&mut s);
        let client = sim.client();
        async move { client.create_instance(&s).await.unwrap_err().to_string() }
    };
    let err = refused(|s| s.template = "Windows 95".into()).await;
    assert!(
        err.contains("template \"Windows 95\" not found")
            && err.contains("Linux Debian 12 (Bookworm) 64-bit"),
        "{err}"
    );
    let err = refused(|s| s.instance_type = "standard.gigantic".into()).await;
    assert!(err.contains("standard.small"), "{err}");
    let err = refused(|s| s.security_groups = vec!["nope".into()]).await;
    assert!(
        err.contains("security group \"nope\"") && err.contains("web"),
        "{err}"
    );
    let err = sim
        .client()
        .find_elastic_ip("192.0.2.1".parse().unwrap())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("Elastic IP 192.0.2.1 not found") && err.contains(EIP),
        "{err}"
    );
    assert_eq!(sim.state().await["instances"], json!([]));
}

#[tokio::test]
async fn wrong_credentials_say_what_to_check_and_never_show_the_secret() {
    let sim = Exosim::start(&[]);
    let wrong_secret = "wrong-secret-MUST-NOT-APPEAR";
    let cloud = sim.client_with(Credentials::new(KEY, wrong_secret));
    let err = cloud.list_elastic_ips().await.unwrap_err();
    assert!(matches!(err, CloudError::Forbidden { .. }), "{err}");
    let text = format!("{err} {err:?} {:?}", Credentials::new(KEY, wrong_secret));
    for needle in [
        "EXOSCALE_API_KEY",
        "EXOSCALE_API_SECRET",
        "clock",
        "invalid request signature",
    ] {
        assert!(text.contains(needle), "missing {needle}: {text}");
    }
    assert!(
        !text.contains(wrong_secret) && !text.contains(SECRET),
        "a secret leaked: {text}"
    );
    assert_eq!(
        sim.state().await["calls"]["refused-unsigned"],
        1,
        "a 403 is not retried"
    );

    // A clock far behind makes every signature expire before it is sent.
    struct Behind;
    impl baton::clock::Clock for Behind {
        fn now(&self) -> std::time::SystemTime {
            std::time::SystemTime::now() - Duration::from_secs(3600)
        }
    }
    let late = sim.client().with_clock(std::sync::Arc::new(Behind));
    let err = late.list_elastic_ips().await.unwrap_err().to_string();
    assert!(err.contains("expired") && err.contains("clock"), "{err}");

    // A clock far ahead signs for years: refused too (a replayable credential), and
    // exosim's controls are never served on a non-loopback address by default.
    struct Ahead;
    impl baton::clock::Clock for Ahead {
        fn now(&self) -> std::time::SystemTime {
            std::time::SystemTime::now() + Duration::from_secs(10 * 365 * 24 * 3600)
        }
    }
    let early = sim.client().with_clock(std::sync::Arc::new(Ahead));
    let err = early.list_elastic_ips().await.unwrap_err().to_string();
    assert!(err.contains("too far ahead"), "{err}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_exosim"))
        .args(["--listen", "0.0.0.0:0", "--key", KEY, "--secret", SECRET])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--allow-remote"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Missing variables are named.
    let missing = temp_env_missing();
    assert!(missing.contains("EXOSCALE_API_KEY"), "{missing}");
}

fn temp_env_missing() -> String {
    // Only the variable names matter here; run in a child so this process's environment
    // stays untouched for the other tests.
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "print_missing_credentials_error", "--nocapture"])
        .env_remove("EXOSCALE_API_KEY")
        .env_remove("EXOSCALE_API_SECRET")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn print_missing_credentials_error() {
    if std::env::var_os("EXOSCALE_API_KEY").is_none() {
        println!("{}", Credentials::from_env().unwrap_err());
    }
}

#[tokio::test]
async fn state_file_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("world.json");
    let state_arg = state.to_str().unwrap();
    let id = {
        let sim = Exosim::start(&["--state", state_arg]);
        let i = sim.client().create_instance(&spec(1)).await.unwrap();
        i.id
    };
    let sim = Exosim::start(&["--state", state_arg]);
    let found = sim
        .client()
        .get_instance(&id)
        .await
        .unwrap()
        .expect("the instance survived the restart");
    assert_eq!(found.name, "blog-1");
    // It holds the instances' user-data (their private keys): owner only.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&state).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{mode:o}");
}

#[tokio::test]
async fn hooks_see_the_instance_and_its_decoded_user_data() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("hook.log");
    let create = format!(
        "sh -c 'echo create $0 $1 >> {l}; cp $2 {d}/seen-user-data; echo public-ip=127.0.0.42' ",
        l = log.display(),
        d = dir.path().display()
    );
    let delete = format!("sh -c 'echo delete $0 $1 >> {l}'", l = log.display());
    let sim = Exosim::start(&["--on-create", &create, "--on-delete", &delete]);
    let cloud = sim.client();
    let i = cloud.create_instance(&spec(1)).await.unwrap();
    assert_eq!(
        i.public_ip,
        Some("127.0.0.42".parse().unwrap()),
        "the hook's public-ip= line sets the address"
    );
    let seen = std::fs::read_to_string(dir.path().join("seen-user-data")).unwrap();
    assert_eq!(seen, "#cloud-config\nruncmd: [[true]]\n");
    cloud.delete_instance(&i.id).await.unwrap();
    let log = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        log,
        format!("create {id} blog-1\ndelete {id} blog-1\n", id = i.id)
    );
}

#[tokio::test]
async fn a_failing_create_hook_fails_the_operation_with_its_message() {
    let sim = Exosim::start(&[
        "--on-create",
        "sh -c 'echo qemu could not boot >&2; exit 3'",
    ]);
    let err = sim
        .client()
        .create_instance(&spec(1))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("on-create hook exited") && err.contains("qemu could not boot"),
        "{err}"
    );
}

/// Signed-query-args are verified in the order the header lists them, and a parameter
/// with a value that the header does not list is refused (its value went unsigned).
#[tokio::test]
async fn query_arguments_are_verified_in_the_order_the_header_lists_them() {
    let sim = Exosim::start(&[]);
    let expires = baton::clock::unix_seconds(std::time::SystemTime::now()) + 300;
    let get = |query: &'static str, names: &'static str, values: Vec<&'static str>| {
        let sig = signing::signature(SECRET, "GET", "/v2/instance", &values, b"", expires);
        let auth = format!(
            "EXO2-HMAC-SHA256 credential={KEY},signed-query-args={names},expires={expires},signature={sig}"
        );
        let url = format!("{}/instance?{query}", sim.url);
        async move {
            reqwest::Client::new()
                .get(url)
                .header("Authorization", auth)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    // Not sorted, and the values in that same order: fine.
    assert_eq!(
        get(
            "labels=a%3Db&ip-address=203.0.113.10",
            "labels;ip-address",
            vec!["a=b", "203.0.113.10"]
        )
        .await,
        200
    );
    // The values in another order than the names: refused.
    assert_eq!(
        get(
            "labels=a%3Db&ip-address=203.0.113.10",
            "labels;ip-address",
            vec!["203.0.113.10", "a=b"]
        )
        .await,
        403
    );
    // A valued parameter the header leaves out: refused.
    assert_eq!(
        get(
            "labels=a%3Db&ip-address=203.0.113.10",
            "labels",
            vec!["a=b"]
        )
        .await,
        403
    );
    // A trailing slash names no instance; a non-uuid id is a 400, as the spec's format says.
    let signed = |path: &str| {
        let auth =
            signing::authorization(KEY, SECRET, "GET", &format!("/v2{path}"), &[], b"", expires);
        reqwest::Client::new()
            .get(format!("{}{path}", sim.url))
            .header("Authorization", auth)
            .send()
    };
    assert_eq!(signed("/instance/").await.unwrap().status().as_u16(), 404);
    assert_eq!(
        signed("/instance/not-a-uuid")
            .await
            .unwrap()
            .status()
            .as_u16(),
        400
    );
}

/// Serves `bytes` at `/image.qcow2` on loopback, as the object store serves a pre-signed
/// GET: what a registration downloads.
async fn serve_image(bytes: Vec<u8>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/image.qcow2",
        axum::routing::get(move || {
            let bytes = bytes.clone();
            async move { bytes }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/image.qcow2?X-Amz-Signature=secret")
}

fn md5_hex(bytes: &[u8]) -> String {
    use md5::Digest;
    format!("{:x}", md5::Md5::digest(bytes))
}

fn template_spec(name: &str, url: &str, md5: &str) -> baton::cloud::TemplateSpec {
    baton::cloud::TemplateSpec {
        name: name.into(),
        url: url.into(),
        md5: md5.into(),
        default_user: "debian".into(),
        description: "baton bake of recipe 0123abcd".into(),
        build: "0123abcd".into(),
    }
}

#[tokio::test]
async fn a_registered_template_is_downloaded_checked_listed_and_booted() {
    let dir = tempfile::tempdir().unwrap();
    let create = format!(
        "sh -c 'cp \"$EXOSIM_TEMPLATE_FILE\" {d}/booted; echo public-ip=127.0.0.42' ",
        d = dir.path().display()
    );
    let sim = Exosim::start(&["--on-create", &create]);
    let cloud = sim.client();
    let image = b"QFI\xfb a qcow2's bytes".repeat(5000);
    let url = serve_image(image.clone()).await;

    let t = cloud
        .register_template(&template_spec(
            "baton-blog-0123abcd",
            &url,
            &md5_hex(&image),
        ))
        .await
        .unwrap();
    assert_eq!(t.name, "baton-blog-0123abcd");
    assert_eq!(t.size, Some(image.len() as u64));
    let own = cloud.list_own_templates().await.unwrap();
    assert_eq!(own, vec![t.clone()]);

    // An instance of it boots the downloaded image; the stock templates are unchanged.
    let mut s = spec(1);
    s.template = t.name.clone();
    cloud.create_instance(&s).await.unwrap();
    assert_eq!(std::fs::read(dir.path().join("booted")).unwrap(), image);

    cloud.delete_template(&t.id).await.unwrap();
    cloud.delete_template(&t.id).await.unwrap(); // already gone: success
    assert_eq!(cloud.list_own_templates().await.unwrap(), vec![]);
    assert_conformant(&sim).await;
}

#[tokio::test]
async fn a_template_whose_checksum_differs_fails_and_is_never_listed() {
    let sim = Exosim::start(&[]);
    let cloud = sim.client();
    let url = serve_image(b"not what was baked".to_vec()).await;
    let err = cloud
        .register_template(&template_spec(
            "baton-blog-1",
            &url,
            &md5_hex(b"what was baked"),
        ))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("register-template") && err.contains("checksum"),
        "{err}"
    );
    assert!(
        !err.contains("secret"),
        "the pre-signed URL's signature leaked: {err}"
    );
    assert_eq!(cloud.list_own_templates().await.unwrap(), vec![]);

    // Exoscale's own templates are not the account's to delete.
    let debian = "8a0f7a52-3b1e-4f0c-9d41-2b6a1f0d0c01";
    let (status, _) = raw(
        &sim,
        "DELETE",
        &format!("/template/{debian}"),
        &json!({}),
        SECRET,
    )
    .await;
    assert_eq!(status, 403);
    assert_conformant(&sim).await;
}
