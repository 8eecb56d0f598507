//! The tests' S3 server (s3s-fs, SigV4 checked) as a process, for benchmarks and demos.
//! Usage: s3_server ROOT [LISTEN]. Prints the endpoint, then serves until killed.
//! Credentials: AKIATESTBATON / test-s3-secret-key-for-baton; bucket `baton-test`.

#[path = "../tests/common/s3.rs"]
#[allow(dead_code)]
mod s3;

fn main() {
    let mut args = std::env::args().skip(1);
    let root = std::path::PathBuf::from(args.next().expect("usage: s3_server ROOT [LISTEN]"));
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:0".to_string());
    let server = s3::S3Server::start_in(&root, &listen);
    println!("{}", server.endpoint);
    // Nothing is recorded for long runs: keep memory flat.
    loop {
        std::thread::sleep(std::time::Duration::from_secs(5));
        server.requests.lock().unwrap().clear();
    }
}
