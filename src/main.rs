use clap::Parser;

fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BATON_LOG")
                // The AWS credential chain warns for every source it tries and finds empty
                // (IMDS off an EC2 host); a chain that finds nothing is baton's own error.
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,aws_config=error")),
        )
        .init();
    let cli = baton::cli::Cli::parse();
    if let Err(e) = baton::commands::run(cli) {
        eprintln!("error: {e}");
        std::process::exit(e.exit_code());
    }
}
