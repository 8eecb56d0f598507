//! `baton bundle`: the reproducible zip of the compose bundle, and its sha256.

use crate::cli::BundleArgs;
use crate::config::Config;
use crate::error::Error;

pub fn run(args: &BundleArgs) -> Result<(), Error> {
    let config = Config::load(&args.config.path)?;
    let bundle = crate::bundle::zip_dir(&config.resolve(&config.bundle.dir))?;
    crate::fsutil::write_atomic(&args.out, &bundle.bytes, crate::fsutil::PUBLIC)?;
    eprintln!(
        "wrote {} ({} files, {} bytes)",
        args.out.display(),
        bundle.files,
        bundle.bytes.len()
    );
    println!("{}", bundle.sha256);
    Ok(())
}
