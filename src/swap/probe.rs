//! Looking at the site over HTTPS as a visitor would, pinned to baton's TLS CA: what the
//! health check, the address checks (and the watch after a cut-over) ask.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::ctx::Ctx;

/// One HTTPS look at the site under `name` (the client resolves it to the server): the
/// generation `/.well-known/baton` names, if `/` also answers 2xx; otherwise what went wrong.
pub async fn probe(client: &reqwest::Client, name: &str) -> Result<u64, String> {
    let base = format!("https://{name}");
    let page = client
        .get(format!("{base}/"))
        .send()
        .await
        .map_err(|e| crate::cause::chain(&e))?;
    if !page.status().is_success() {
        let status = page.status();
        let body = page.text().await.unwrap_or_default();
        return Err(format!(
            "GET / answered {status}: {}",
            body.chars().take(200).collect::<String>()
        ));
    }
    let marker = client
        .get(format!("{base}/.well-known/baton"))
        .send()
        .await
        .map_err(|e| crate::cause::chain(&e))?;
    let status = marker.status();
    let body = marker.text().await.unwrap_or_default();
    if !status.is_success() {
        return Err(format!("GET /.well-known/baton answered {status}"));
    }
    body.trim().parse().map_err(|_| {
        format!(
            "GET /.well-known/baton answered {:?}, not a generation",
            body.trim()
        )
    })
}

/// Polls until `want` consecutive answers name `generation`, or `timeout`.
pub async fn until_generation(
    ctx: &Ctx,
    ip: IpAddr,
    generation: u64,
    want: u32,
    timeout: Duration,
) -> Result<(), String> {
    let client = ctx.https(ip).map_err(|e| e.0)?;
    let origin = ctx.origin();
    let start = Instant::now();
    let mut streak = 0;
    loop {
        let last = match probe(&client, &origin).await {
            Ok(g) if g == generation => {
                streak += 1;
                if streak >= want {
                    return Ok(());
                }
                continue;
            }
            Ok(g) => format!("generation {g} answered"),
            Err(e) => e,
        };
        streak = 0;
        if start.elapsed() >= timeout {
            return Err(last);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
