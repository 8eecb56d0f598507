//! `baton status`: where the site stands, read from the cloud and the store.

use crate::cli::ReportArgs;
use crate::config::Config;
use crate::error::Error;
use crate::swap::overview::gather;

pub async fn run(args: &ReportArgs) -> Result<(), Error> {
    let config = Config::load(&args.config.path)?;
    let (cloud, store) = super::operator(&config).await?;
    let overview = gather(&config, cloud.as_ref(), store).await?;
    super::print(args.json, &overview, || overview.render());
    Ok(())
}
