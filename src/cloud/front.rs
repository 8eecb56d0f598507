//! The front: what carries the site's public traffic to its servers (an Elastic IP, a
//! load balancer's target group). Each provider describes its kinds of front by the
//! properties the swap depends on, so the saga asks "does it serve one member at a time"
//! instead of "is this AWS". Moving it is the [`Cloud`]'s `front_add` / `front_remove` /
//! `front_members`; the cut-over both sagas make with them is `swap::cutover`.

use std::fmt;
use std::net::IpAddr;

use serde::Serialize;

use super::{Cloud, CloudError};

/// A front as the swap sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Front {
    /// What it is, as the config names it ("elastic-ip", "alb").
    pub kind: &'static str,
    /// What it is, in a message: "the Elastic IP", "the target group".
    #[serde(skip)]
    pub noun: &'static str,
    /// Where baton reaches it, as a visitor does: the address the site answers on.
    pub address: IpAddr,
    /// Adding a member takes the traffic off the one before it at once, and the address
    /// that one answered on goes with it (an AWS Elastic IP, translated to one instance).
    /// Otherwise members serve side by side until one is removed (an Exoscale Elastic IP,
    /// routed to each holder; a target group).
    pub one_at_a_time: bool,
    /// Each member holds the front's address on an interface of its own (Exoscale routes
    /// an Elastic IP to its holders, which must accept it: the "manual" model). AWS
    /// translates an Elastic IP to the instance's own address, and a load balancer's
    /// address is not the server's to hold.
    pub held_by_server: bool,
    /// What adding a member does, and removing one, in `baton plan`'s words.
    #[serde(skip)]
    pub attach: &'static str,
    #[serde(skip)]
    pub detach: &'static str,
}

impl fmt::Display for Front {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.address)
    }
}

/// Puts the front back on `keep` alone after `drop` was added: `keep` first, so a front
/// that serves one member at a time never points at nobody, then `drop` out.
pub async fn back_to(
    cloud: &dyn Cloud,
    front: &str,
    keep: Option<&str>,
    drop: &str,
) -> Result<(), CloudError> {
    if let Some(keep) = keep {
        cloud.front_add(front, keep).await?;
    }
    cloud.front_remove(front, drop).await
}
