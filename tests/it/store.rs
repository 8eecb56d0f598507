//! The object stores against a real S3-compatible server (s3s-fs) and the local folder,
//! and archive unpacking against hostile input.

use crate::common;

use std::path::Path;
use std::sync::atomic::Ordering;

use baton::backup::archive;
use baton::store::fs::FsStore;
use baton::store::{Created, ObjectStore, StoreError};
use common::s3::{ACCESS_KEY, BUCKET, S3Server, SECRET_KEY};

fn checksum_headers(s3: &S3Server, since: usize) -> Vec<String> {
    s3.requests_since(since)
        .into_iter()
        .flat_map(|r| {
            r.headers.into_iter().filter_map(move |(k, v)| {
                let bad = k.starts_with("x-amz-checksum-")
                    || k == "x-amz-sdk-checksum-algorithm"
                    || k == "x-amz-trailer"
                    || k == "x-amz-decoded-content-length"
                    || (k == "content-encoding" && v.contains("aws-chunked"));
                bad.then(|| format!("{} {}: {k}: {v}", r.method, r.path))
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn uploads_send_no_checksum_headers_and_no_aws_chunked_bodies() {
    let s3 = S3Server::start();
    let store = s3.store("hdr");
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small");
    std::fs::write(&small, vec![7u8; 1000]).unwrap();
    let big = dir.path().join("big");
    std::fs::write(
        &big,
        (0..20u32 << 20)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>(),
    )
    .unwrap();

    let before = s3.request_count();
    store.put("a/bytes", b"hello".to_vec()).await.unwrap();
    assert_eq!(store.put_file("a/small", &small).await.unwrap(), 1000);
    assert_eq!(store.put_file("a/big", &big).await.unwrap(), 20 << 20);
    assert_eq!(
        store.create_new("a/new", b"x".to_vec()).await.unwrap(),
        Created::Created
    );
    store.delete("a/bytes").await.unwrap();
    let requests = s3.requests_since(before);
    assert!(
        requests
            .iter()
            .any(|r| r.method == "POST" && r.path.ends_with("a/big")),
        "the big file did not go multipart"
    );
    assert_eq!(checksum_headers(&s3, before), Vec::<String>::new());

    // The control: the SDK's defaults do send them, so this check can fail.
    let creds = aws_sdk_s3::config::Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test");
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .endpoint_url(&s3.endpoint)
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .credentials_provider(creds)
        .force_path_style(true)
        .build();
    let before = s3.request_count();
    aws_sdk_s3::Client::from_conf(conf)
        .put_object()
        .bucket(BUCKET)
        .key("hdr/default")
        .body(aws_sdk_s3::primitives::ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap();
    assert!(
        !checksum_headers(&s3, before).is_empty(),
        "the SDK's defaults sent no checksum headers: the check above proves nothing"
    );
}

async fn store_semantics(store: &dyn ObjectStore) {
    assert_eq!(
        store.create_new("lock", b"one".to_vec()).await.unwrap(),
        Created::Created
    );
    assert_eq!(
        store.create_new("lock", b"two".to_vec()).await.unwrap(),
        Created::AlreadyExists
    );
    assert_eq!(
        store.get("lock").await.unwrap().unwrap(),
        b"one",
        "a refused create overwrote"
    );
    assert_eq!(store.get("missing").await.unwrap(), None);
    store
        .delete("missing")
        .await
        .expect("deleting what is gone succeeds");
    store.put("d/x/1", b"1".to_vec()).await.unwrap();
    store.put("d/y", b"22".to_vec()).await.unwrap();
    let listed: Vec<(String, u64)> = store
        .list("d/")
        .await
        .unwrap()
        .into_iter()
        .map(|o| (o.key, o.size))
        .collect();
    assert_eq!(listed, [("d/x/1".to_string(), 1), ("d/y".to_string(), 2)]);
    let dir = tempfile::tempdir().unwrap();
    // A server may have written more than what names the object says: reading stops.
    assert!(
        matches!(
            store.get_to_file("d/y", &dir.path().join("y"), 1).await,
            Err(StoreError::TooLarge { limit: 1, .. })
        ),
        "a 2-byte object past a 1-byte limit"
    );
    let got = store
        .get_to_file("d/y", &dir.path().join("y"), 2)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.size, 2);
    assert_eq!(
        got.sha256,
        "785f3ec7eb32f30b90cd0fcf3657d388b5ff4297f2f9716ff66e9b69c05ddd09"
    );
    assert!(
        store
            .get_to_file("nope", &dir.path().join("n"), 1)
            .await
            .unwrap()
            .is_none()
    );
    for bad in ["../escape", "/abs", "a/./b"] {
        assert!(
            matches!(store.put(bad, vec![]).await, Err(StoreError::BadKey(_))),
            "{bad}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_and_file_stores_behave_the_same() {
    let s3 = S3Server::start();
    store_semantics(&s3.store("sem")).await;
    let dir = tempfile::tempdir().unwrap();
    let fs = FsStore::new(dir.path(), &format!("file://{}", dir.path().display())).unwrap();
    store_semantics(&fs).await;
}

/// moto's S3, as AWS's S3 honours it: `If-None-Match: *` refuses a second create.
#[tokio::test(flavor = "multi_thread")]
async fn motos_s3_behaves_the_same() {
    let moto = common::moto::Moto::plain();
    let store = moto.s3_store("baton-moto", "sem").await;
    store_semantics(&store).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_ignores_conditional_writes_is_detected_not_trusted() {
    let s3 = S3Server::start();
    s3.ignore_conditions.store(true, Ordering::SeqCst);
    let store = s3.store("cond");
    let err = store.create_new("lock", b"x".to_vec()).await.unwrap_err();
    assert!(
        matches!(err, StoreError::NoConditionalWrites { .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("ignores conditional writes"),
        "{err}"
    );
    assert_eq!(
        store.get("lock").await.unwrap(),
        None,
        "nothing was written"
    );
}

/// A tar.gz with one raw entry, whatever its name (the tar crate refuses to write `..`).
fn hostile(dir: &Path, name: &str, kind: tar::EntryType, link: Option<&str>) -> std::path::PathBuf {
    let path = dir.join("hostile.tar.gz");
    let gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&path).unwrap(),
        flate2::Compression::fast(),
    );
    let mut b = tar::Builder::new(gz);
    let mut h = tar::Header::new_old();
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    if let Some(l) = link {
        h.as_old_mut().linkname[..l.len()].copy_from_slice(l.as_bytes());
    }
    h.set_entry_type(kind);
    h.set_mode(0o644);
    let data = b"pwned";
    h.set_size(if kind == tar::EntryType::Regular {
        data.len() as u64
    } else {
        0
    });
    h.set_cksum();
    b.append(
        &h,
        if kind == tar::EntryType::Regular {
            &data[..]
        } else {
            &[][..]
        },
    )
    .unwrap();
    b.into_inner().unwrap().finish().unwrap();
    path
}

#[test]
fn hostile_archives_are_refused_and_write_nothing_outside() {
    use tar::EntryType::*;
    let cases = [
        ("../evil", Regular, None, "contains .."),
        ("a/../../evil", Regular, None, "contains .."),
        ("/tmp/baton-evil-absolute", Regular, None, "absolute"),
        ("link", Symlink, Some("/etc/passwd"), "resolves outside"),
        ("sub/link", Symlink, Some("../../evil"), "resolves outside"),
        ("hard", Link, Some("../evil"), "outside"),
        ("dev", Char, None, "device"),
    ];
    for (name, kind, link, why) in cases {
        let work = tempfile::tempdir().unwrap();
        let dest = work.path().join("dest");
        std::fs::create_dir(&dest).unwrap();
        let tgz = hostile(work.path(), name, kind, link);
        let err = archive::unpack(&tgz, &dest).unwrap_err().to_string();
        assert!(
            err.contains("refused") && err.contains(why),
            "{name}: {err}"
        );
        assert!(
            !work.path().join("evil").exists() && !Path::new("/tmp/baton-evil-absolute").exists(),
            "{name} wrote outside"
        );
    }
    // A link that stays inside is fine.
    let work = tempfile::tempdir().unwrap();
    let dest = work.path().join("dest");
    std::fs::create_dir(&dest).unwrap();
    archive::unpack(
        &hostile(work.path(), "sub/link", Symlink, Some("../file")),
        &dest,
    )
    .unwrap();
    assert_eq!(
        std::fs::read_link(dest.join("sub/link")).unwrap(),
        Path::new("../file")
    );
}

#[test]
fn archives_are_reproducible_and_round_trip() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("acme");
    std::fs::create_dir_all(src.join("certs")).unwrap();
    std::fs::write(src.join("acme.json"), "{}").unwrap();
    std::fs::write(src.join("certs/blog.pem"), "PEM").unwrap();
    std::os::unix::fs::symlink("certs/blog.pem", src.join("current")).unwrap();
    archive::pack(&src, &work.path().join("a.tgz")).unwrap();
    // Rewrite a file with another mtime: the bytes must not change.
    std::fs::write(src.join("acme.json"), "{}").unwrap();
    std::fs::File::options()
        .write(true)
        .open(src.join("acme.json"))
        .unwrap()
        .set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(3600))
        .unwrap();
    archive::pack(&src, &work.path().join("b.tgz")).unwrap();
    assert_eq!(
        std::fs::read(work.path().join("a.tgz")).unwrap(),
        std::fs::read(work.path().join("b.tgz")).unwrap()
    );
    let dest = work.path().join("out");
    std::fs::create_dir(&dest).unwrap();
    archive::unpack(&work.path().join("a.tgz"), &dest).unwrap();
    assert_eq!(
        std::fs::read_to_string(dest.join("current")).unwrap(),
        "PEM"
    );
    // A changed file changes the archive.
    std::fs::write(src.join("acme.json"), "{\"x\":1}").unwrap();
    archive::pack(&src, &work.path().join("c.tgz")).unwrap();
    assert_ne!(
        std::fs::read(work.path().join("a.tgz")).unwrap(),
        std::fs::read(work.path().join("c.tgz")).unwrap()
    );
}

/// An S3 error's answer never reaches a message whole (issue 29): AWS's
/// SignatureDoesNotMatch body carries the request's access key id and, with temporary
/// keys, its session token. Only the status, the code and the message are printed.
#[tokio::test(flavor = "multi_thread")]
async fn an_s3_error_prints_its_code_and_message_not_the_answer() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const KEY_ID: &str = "AKIALEAKEDKEYID12345";
    const TOKEN: &str = "IQoJb3JpZ2luX2VjELEAKEDSESSIONTOKEN";
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let _ = conn.read(&mut buf).await;
                let body = format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SignatureDoesNotMatch</Code>\
                     <Message>The request signature we calculated does not match the signature you provided.</Message>\
                     <AWSAccessKeyId>{KEY_ID}</AWSAccessKeyId><StringToSign>AWS4-HMAC-SHA256 {TOKEN}</StringToSign>\
                     <CanonicalRequest>GET x-amz-security-token:{TOKEN}</CanonicalRequest>\
                     <RequestId>R1</RequestId></Error>"
                );
                let answer = format!(
                    "HTTP/1.1 403 Forbidden\r\ncontent-type: application/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(answer.as_bytes()).await;
            });
        }
    });
    let creds =
        aws_sdk_s3::config::Credentials::new(KEY_ID, "secret", Some(TOKEN.into()), None, "test");
    let store = baton::store::s3::S3Store::new(
        "s3://bucket/p",
        &format!("http://{addr}"),
        "us-east-1",
        creds,
    )
    .unwrap();
    for e in [
        store.get("state.json").await.unwrap_err(),
        store.put("x", b"y".to_vec()).await.unwrap_err(),
        store.list("").await.unwrap_err(),
    ] {
        let text = e.to_string();
        assert!(text.contains("SignatureDoesNotMatch"), "{text}");
        assert!(text.contains("403"), "{text}");
        assert!(!text.contains(KEY_ID), "the key id leaked: {text}");
        assert!(!text.contains(TOKEN), "the session token leaked: {text}");
    }
}

/// An endless object where a JSON one goes (a manifest, a journal) is not read into
/// memory whole (issue 29).
#[tokio::test]
async fn a_small_object_read_stops_at_its_limit() {
    let dir = tempfile::tempdir().unwrap();
    let store = baton::store::fs::FsStore::new(dir.path(), "file:///limit").unwrap();
    let big = dir.path().join("manifests/huge.json");
    std::fs::create_dir_all(big.parent().unwrap()).unwrap();
    let file = std::fs::File::create(&big).unwrap();
    file.set_len(baton::store::MAX_SMALL_OBJECT + 1).unwrap(); // sparse: no disk used
    let err = store.get("manifests/huge.json").await.unwrap_err();
    assert!(matches!(err, StoreError::TooLarge { .. }), "{err}");
    assert!(err.to_string().contains("manifests/huge.json"), "{err}");
}
