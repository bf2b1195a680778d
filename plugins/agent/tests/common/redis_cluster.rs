//! A real Redis Cluster on loopback: three primaries with a replica each, every node a
//! `redis-server` started with the deploy example's `redis.conf` (append-only file, no eviction,
//! the `aforo` ACL user) in cluster mode, joined with `redis-cli --cluster create`. Every node
//! is killed when the cluster drops, also when a test fails.

use super::redis_server::{RedisServer, SharedState, ADMIN, AFORO_PASSWORD};
use aforo_host_tests::envoy::free_port;
use std::process::Command;
use std::time::{Duration, Instant};

pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl SharedState for RedisCluster {
    fn agent_flags(&self) -> Vec<String> {
        [
            "--state",
            &self.url(),
            "--redis-cluster",
            "true",
            "--redis-wait-replicas",
            "1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }
    fn quota_used(&self, customer: &str, feature: &str) -> u64 {
        let v: Option<Vec<u8>> = redis::cmd("HGET")
            .arg(format!(
                "aforo:{{sandbox:{customer}}}q:sandbox:{customer}:{feature}"
            ))
            .arg("v")
            .query(&mut self.connection())
            .unwrap();
        v.map(|b| u64::from_le_bytes(b[8..16].try_into().unwrap()))
            .unwrap_or(0)
    }
}

impl RedisCluster {
    /// Six nodes, three primaries and three replicas, a node timeout of 1 s (failovers within
    /// a few seconds).
    pub fn start(tag: &str) -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..6)
            .map(|i| {
                RedisServer::start_with(&format!("{tag}-{i}"), |_| {
                    let bus = free_port().to_string();
                    [
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        "1000",
                        "--cluster-port",
                        &bus,
                        // Replicas log in to their primaries as the test's admin user.
                        "--masteruser",
                        "admin",
                        "--masterauth",
                        ADMIN,
                    ]
                    .iter()
                    .map(|s| s.to_string())
                    .collect()
                })
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .args(["--user", "admin", "--pass", ADMIN, "--no-auth-warning"])
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("redis-cli runs (scripts/setup.sh installs redis-tools)");
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let c = RedisCluster { nodes };
        c.wait_healthy(&[]);
        c
    }

    /// The agents' `state`: two of the nodes (the client finds the others).
    pub fn url(&self) -> String {
        self.nodes[..2]
            .iter()
            .map(|n| format!("redis://aforo:{AFORO_PASSWORD}@127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A cluster connection as the test's admin user.
    pub fn connection(&self) -> redis::cluster::ClusterConnection {
        let seeds: Vec<String> = self
            .nodes
            .iter()
            .filter(|n| n.connection().is_some())
            .map(|n| format!("redis://admin:{ADMIN}@127.0.0.1:{}", n.port))
            .collect();
        redis::cluster::ClusterClient::new(seeds)
            .unwrap()
            .get_connection()
            .unwrap()
    }

    /// The port of the primary serving `key`'s slot, as a live node sees it.
    pub fn primary_of(&self, key: &str) -> u16 {
        let mut con = self
            .nodes
            .iter()
            .find_map(|n| n.connection())
            .expect("a live node");
        let slot: i64 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut con)
            .unwrap();
        let slots: Vec<redis::Value> = redis::cmd("CLUSTER").arg("SLOTS").query(&mut con).unwrap();
        for range in slots {
            let redis::Value::Array(parts) = range else {
                continue;
            };
            let int = |v: &redis::Value| match v {
                redis::Value::Int(n) => *n,
                _ => -1,
            };
            if int(&parts[0]) <= slot && slot <= int(&parts[1]) {
                if let redis::Value::Array(primary) = &parts[2] {
                    return int(&primary[1]) as u16;
                }
            }
        }
        panic!("no primary serves slot {slot}")
    }

    /// SIGKILLs the node on `port`.
    pub fn kill(&mut self, port: u16) {
        let n = self.nodes.iter_mut().find(|n| n.port == port).unwrap();
        n.kill();
    }

    /// Starts the node on `port` again (it rejoins as a replica of whoever took its slots).
    pub fn restart(&mut self, port: u16) {
        let n = self.nodes.iter_mut().find(|n| n.port == port).unwrap();
        n.restart();
    }

    /// Waits (bounded) until every live node but `except` reports the cluster ok and every slot
    /// served by a live primary.
    pub fn wait_healthy(&self, except: &[u16]) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = self
                .nodes
                .iter()
                .filter(|n| !except.contains(&n.port))
                .all(|n| {
                    n.connection().is_some_and(|mut c| {
                        let info: String = redis::cmd("CLUSTER")
                            .arg("INFO")
                            .query(&mut c)
                            .unwrap_or_default();
                        let replication: String = redis::cmd("INFO")
                            .arg("replication")
                            .query(&mut c)
                            .unwrap_or_default();
                        // A primary's replica is online, a replica's link is up.
                        let replicated = replication.contains("role:master")
                            && replication.contains("state=online")
                            || replication.contains("master_link_status:up");
                        info.contains("cluster_state:ok")
                            && info.contains("cluster_slots_ok:16384")
                            && (replicated || !except.is_empty())
                    })
                });
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster is not healthy after 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
