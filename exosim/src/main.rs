//! `exosim`: a local Exoscale compute API v2 for tests and rehearsals. See the library's docs.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use exosim::{Fault, Latency, Options, Sim};

#[derive(Debug, Parser)]
#[command(
    name = "exosim",
    version,
    args_override_self = true,
    about = "A local Exoscale compute API v2 that follows Exoscale's OpenAPI spec"
)]
struct Args {
    /// Address to listen on; port 0 picks a free one (the first line of output names it).
    /// Loopback only unless --allow-remote: the controls under /_sim/ (state, faults)
    /// take no signature, as a simulator's own controls, so anyone who reaches them can
    /// read and change the world.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// Listen on a non-loopback address, with /_sim/ open to whoever reaches it.
    #[arg(long)]
    allow_remote: bool,
    #[arg(long, default_value = "ch-gva-2")]
    zone: String,
    /// Keep the world in this file across restarts.
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// The only API key accepted.
    #[arg(long, env = "EXOSCALE_API_KEY", hide_env_values = true)]
    key: String,
    /// Its secret.
    #[arg(long, env = "EXOSCALE_API_SECRET", hide_env_values = true)]
    secret: String,
    /// Elastic IPs the zone starts with.
    #[arg(long = "eip", value_name = "ADDRESS", default_value = "203.0.113.10")]
    eips: Vec<String>,
    /// How long writes stay pending.
    #[arg(long, value_name = "DURATION", default_value = "100ms", value_parser = humantime::parse_duration)]
    operation_delay: Duration,
    /// OP:N:ACTION, e.g. create-instance:2:500, get-operation:1:drop, create-instance:1:fail.
    #[arg(long = "fault", value_name = "OP:N:ACTION")]
    faults: Vec<Fault>,
    /// OP:DURATION, e.g. create-instance:5s or '*:50ms'.
    #[arg(long = "latency", value_name = "OP:DURATION")]
    latency: Vec<Latency>,
    /// Run `CMD ID NAME USER_DATA_FILE` after each create (e.g. to boot a VM).
    #[arg(long, value_name = "CMD")]
    on_create: Option<String>,
    /// Run `CMD ID NAME USER_DATA_FILE` before each delete completes.
    #[arg(long, value_name = "CMD")]
    on_delete: Option<String>,
    /// Make the Elastic IPs real for PORT: connections to EIP:PORT reach the instances
    /// holding it, at their public IP (repeatable; the addresses must be local).
    #[arg(long = "forward", value_name = "PORT")]
    forward: Vec<u16>,
    /// Where decoded user-data files go [default: a temporary directory].
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("EXOSIM_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .init();
    if let Err(e) = run(Args::parse()).await {
        eprintln!("exosim: {e}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let temp;
    let work_dir = match args.work_dir {
        Some(d) => d,
        None => {
            temp = tempfile::tempdir()?;
            temp.path().to_path_buf()
        }
    };
    let mut options = Options::new(&args.key, &args.secret, work_dir);
    options.zone = args.zone;
    let options_eips = args.eips.clone();
    options.elastic_ips = args.eips;
    options.operation_delay = args.operation_delay;
    options.faults = args.faults;
    options.latency = args.latency;
    options.state_file = args.state;
    options.on_create = args.on_create;
    options.on_delete = args.on_delete;
    let sim = Sim::new(options)?;
    for eip in &options_eips {
        for port in &args.forward {
            let ip: std::net::IpAddr = eip.parse()?;
            let f = exosim::forward::forward(sim.clone(), ip, *port)
                .await
                .map_err(|e| format!("cannot forward {ip}:{port}: {e}"))?;
            tokio::spawn(f);
        }
    }
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    let local = listener.local_addr()?;
    if !local.ip().is_loopback() && !args.allow_remote {
        return Err(format!(
            "{local} is not a loopback address, and /_sim/ takes no signature\n  fix: \
             listen on 127.0.0.1, or pass --allow-remote if the network is yours alone"
        )
        .into());
    }
    println!("exosim: listening on http://{local}/v2");
    let shutdown = async {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
    };
    sim.serve(listener, shutdown).await?;
    Ok(())
}
