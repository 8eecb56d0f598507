//! `baton bundle`: the reproducible zip of the compose bundle, and its sha256.

use crate::cli::BundleArgs;
use crate::config::Config;
use crate::error::Error;

pub fn run(args: &BundleArgs) -> Result<(), Error> {
    let config = Config::load(&args.config.path)?;
    let out_dir = match args.out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    let bundle = crate::bundle::zip_dir(&config.resolve(&config.bundle.dir), out_dir)?;
    crate::fsutil::persist(bundle.file, &args.out, crate::fsutil::PUBLIC)?;
    eprintln!(
        "wrote {} ({} files, {} bytes)",
        args.out.display(),
        bundle.files,
        bundle.size
    );
    println!("{}", bundle.sha256);
    Ok(())
}
