//! The Elastic IP made real on one machine: connections to the address reach whichever
//! instances hold it (one picked at random per connection while several hold it, as
//! during a swap's overlap), and an attach or detach takes effect for the next
//! connection. Open connections stay where they are, as on a real network.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};

use super::Sim;
use baton::sync::lock;

/// Binds `eip:port`; the returned future forwards until dropped.
pub async fn forward(
    sim: Arc<Sim>,
    eip: IpAddr,
    port: u16,
) -> std::io::Result<impl std::future::Future<Output = ()>> {
    let listener = TcpListener::bind(SocketAddr::new(eip, port)).await?;
    Ok(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                continue;
            };
            let holders = sim.holders(eip);
            if holders.is_empty() {
                continue; // nobody holds the address: the connection is dropped
            }
            let pick = holders[fastrand::usize(..holders.len())];
            tokio::spawn(async move {
                if let Ok(mut outbound) = TcpStream::connect(SocketAddr::new(pick, port)).await {
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    })
}

impl Sim {
    /// The public IPs of the running instances `eip` is attached to.
    fn holders(&self, eip: IpAddr) -> Vec<IpAddr> {
        let w = lock(&self.world);
        let eip = eip.to_string();
        w.elastic_ips
            .values()
            .filter(|e| e.ip == eip)
            .flat_map(|e| &e.instances)
            .filter_map(|id| w.instances.get(id))
            .filter(|i| i.state == "running")
            .filter_map(|i| i.public_ip.parse().ok())
            .collect()
    }
}
