//! The config's reading of older files: what an earlier baton wrote is read as it
//! meant, so upgrading baton never means editing `baton.toml` first.

use super::{Config, FrontSettings, Problem};

impl Config {
    /// An older file's `[cloud]` front keys, read as `[front]`'s. A file with both is
    /// refused: which one was meant cannot be told.
    pub(super) fn adopt_older_front(&mut self) -> Option<Problem> {
        let c = &mut self.cloud;
        let f = &mut self.front_settings;
        let both = [
            (
                "elastic_ip",
                c.elastic_ip.is_some(),
                "address",
                f.address.is_some(),
            ),
            ("front", c.front.is_some(), "kind", f.kind.is_some()),
            (
                "allocation_id",
                c.allocation_id.is_some(),
                "allocation_id",
                f.allocation_id.is_some(),
            ),
            (
                "target_group",
                c.target_group.is_some(),
                "target_group",
                f.target_group.is_some(),
            ),
        ];
        let any_older = both.iter().any(|b| b.1);
        let any_newer = both.iter().any(|b| b.3);
        if any_older && any_newer {
            let (old, _, new, _) = both.iter().find(|b| b.1)?;
            return Some(Problem {
                field: Some(format!("cloud.{old}")),
                line: None,
                message: "is where a file written before [front] keeps the front, and this \
                          file has a [front] table too"
                    .into(),
                fix: format!("move it to [front] as {new}, beside the rest of the front"),
            });
        }
        if any_older {
            *f = FrontSettings {
                address: c.elastic_ip.take(),
                kind: c.front.take(),
                allocation_id: c.allocation_id.take(),
                target_group: c.target_group.take(),
            };
        }
        None
    }
}
