//! `baton swap` on AWS as moto models it (scripts/moto-rehearsal), with loopback machines
//! behind moto's instances: an Elastic IP front (which moves: the gap is measured) and an
//! ALB front (a stand-in load balancer that follows the target group: no failed request).

#[macro_use]
mod common;

use common::rehearsal::Rehearsal;
use common::{ok, stderr};
use serde_json::json;
use std::time::Duration;

fn deployed(alb: bool) -> (Rehearsal, String) {
    let r = Rehearsal::start_aws(alb);
    let (out, summary) = r.swap(&[]);
    assert!(out.status.success(), "first deploy: {}", stderr(&out));
    assert_eq!(summary["generation"], 1);
    let instance = summary["instance"].as_str().unwrap().to_string();
    r.assert_serving(1, &instance);
    (r, instance)
}

#[test]
fn elastic_ip_first_deploy_then_two_swaps() {
    let (r, mut previous) = deployed(false);
    let known_hosts = ok(r.baton(&["known-hosts"]));
    for generation in [2u64, 3] {
        let (out, summary) = r.swap(&[]);
        assert!(out.status.success(), "swap: {}", stderr(&out));
        assert_eq!(summary["replaced"], json!(previous));
        let instance = summary["instance"].as_str().unwrap().to_string();
        r.assert_serving(generation, &instance);
        // Terminated: its machine goes down soon after, as an EC2 instance shuts down.
        common::wait_for("the old machine to stop", Duration::from_secs(20), || {
            (!r.vm_root(&previous).exists()).then_some(())
        });
        previous = instance;
    }
    assert_eq!(ok(r.baton(&["known-hosts"])), known_hosts);
    assert_eq!(r.sim()["violations"], json!([]));
}
