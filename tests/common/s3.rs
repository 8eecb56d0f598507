//! A real S3-compatible server that nobody on this team wrote (s3s-fs), in-process, with
//! SigV4 checked, every request's headers recorded, and an optional delay per PUT.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;

pub const ACCESS_KEY: &str = "AKIATESTBATON";
pub const SECRET_KEY: &str = "test-s3-secret-key-for-baton";
pub const BUCKET: &str = "baton-test";

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

pub struct S3Server {
    pub endpoint: String,
    pub root: PathBuf,
    _temp: Option<tempfile::TempDir>,
    pub requests: Arc<Mutex<Vec<Recorded>>>,
    /// Milliseconds every PUT waits before it is served.
    pub put_delay_ms: Arc<AtomicU64>,
    /// Answer 200 where the server refused a conditional write with 412: to a client, that
    /// is a server that ignores `If-None-Match` (the header is signed, so it cannot be
    /// stripped from the request instead).
    pub ignore_conditions: Arc<AtomicBool>,
    /// A PUT whose path contains this is answered 500 (a store failing mid-way).
    pub fail_puts: Arc<Mutex<Option<String>>>,
}

impl S3Server {
    pub fn start() -> S3Server {
        let temp = tempfile::tempdir().unwrap();
        let mut server = S3Server::start_in(temp.path(), "127.0.0.1:0");
        server._temp = Some(temp);
        server
    }

    /// Serves `root` (the bucket is a directory in it) on `listen`.
    pub fn start_in(root: &std::path::Path, listen: &str) -> S3Server {
        std::fs::create_dir_all(root.join(BUCKET)).unwrap();
        let fs = s3s_fs::FileSystem::new(root).unwrap();
        let mut builder = S3ServiceBuilder::new(fs);
        builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = builder.build();
        let listener = std::net::TcpListener::bind(listen).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let put_delay_ms = Arc::new(AtomicU64::new(0));
        let ignore_conditions = Arc::new(AtomicBool::new(false));
        let fail_puts: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
        let (rec, delay, ignore, failing) = (
            requests.clone(),
            put_delay_ms.clone(),
            ignore_conditions.clone(),
            fail_puts.clone(),
        );
        // s3s-fs checks `If-None-Match: *` and then writes, so two concurrent conditional
        // PUTs can both succeed. S3 services make the check atomic; so does this fixture,
        // by letting one conditional PUT through at a time.
        let conditional = Arc::new(tokio::sync::Mutex::new(()));
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let Ok((socket, _)) = listener.accept().await else {
                        continue;
                    };
                    let (service, rec, delay, ignore, conditional, failing) = (
                        service.clone(),
                        rec.clone(),
                        delay.clone(),
                        ignore.clone(),
                        conditional.clone(),
                        failing.clone(),
                    );
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        rec.lock().unwrap().push(Recorded {
                            method: req.method().to_string(),
                            path: req.uri().path().to_string(),
                            headers: req
                                .headers()
                                .iter()
                                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                                .collect(),
                        });
                        let ignore = ignore.load(Ordering::SeqCst);
                        let fail = req.method() == hyper::Method::PUT
                            && failing
                                .lock()
                                .unwrap()
                                .as_deref()
                                .is_some_and(|p| req.uri().path().contains(p));
                        let service = service.clone();
                        let conditional = req
                            .headers()
                            .contains_key("if-none-match")
                            .then(|| conditional.clone());
                        let wait = if req.method() == hyper::Method::PUT {
                            delay.load(Ordering::SeqCst)
                        } else {
                            0
                        };
                        async move {
                            if fail {
                                let err = hyper::Response::builder()
                                    .status(500)
                                    .body(s3s::Body::empty())
                                    .unwrap();
                                return Ok::<_, s3s::HttpError>(err);
                            }
                            let _one_at_a_time = match &conditional {
                                Some(m) => Some(m.lock().await),
                                None => None,
                            };
                            if wait > 0 {
                                tokio::time::sleep(Duration::from_millis(wait)).await;
                            }
                            let resp = hyper::service::Service::call(&service, req).await?;
                            if ignore && resp.status() == hyper::StatusCode::PRECONDITION_FAILED {
                                let ok = hyper::Response::builder()
                                    .status(200)
                                    .header("etag", "\"ignored\"")
                                    .body(s3s::Body::empty())
                                    .unwrap();
                                return Ok::<_, s3s::HttpError>(ok);
                            }
                            Ok::<_, s3s::HttpError>(resp)
                        }
                    });
                    tokio::spawn(async move {
                        let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(socket), svc)
                            .await;
                    });
                }
            });
        });
        S3Server {
            endpoint: format!("http://{addr}"),
            root: root.to_path_buf(),
            _temp: None,
            requests,
            put_delay_ms,
            ignore_conditions,
            fail_puts,
        }
    }

    pub fn url(&self, prefix: &str) -> String {
        format!("s3://{BUCKET}/{prefix}")
    }

    /// Where s3s-fs keeps object `key` under `prefix` (to corrupt or delete it).
    pub fn object_path(&self, prefix: &str, key: &str) -> PathBuf {
        self.root.join(BUCKET).join(prefix).join(key)
    }

    pub fn requests_since(&self, n: usize) -> Vec<Recorded> {
        self.requests.lock().unwrap()[n..].to_vec()
    }

    pub fn request_count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    /// The environment a baton process needs to talk to this server.
    pub fn env(&self) -> [(&'static str, &'static str); 2] {
        [
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
        ]
    }

    pub fn store(&self, prefix: &str) -> baton::store::s3::S3Store {
        let creds =
            aws_sdk_s3::config::Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test");
        baton::store::s3::S3Store::new(&self.url(prefix), &self.endpoint, "us-east-1", creds)
            .unwrap()
    }
}
