//! A private RabbitMQ cluster of three nodes on 127.0.0.1 (never the shared broker), for the
//! failover tests: nodes started at once, joined to the first, stopped and removed on drop.

use crate::broker::Broker;

pub struct Cluster {
    pub nodes: Vec<Broker>,
}

impl Cluster {
    /// Starts `n` nodes sharing one Erlang cookie and joins them into one cluster.
    pub fn start(n: usize) -> Cluster {
        let cookie = uuid::Uuid::new_v4().simple().to_string();
        let nodes: Vec<Broker> = (0..n).map(|_| Broker::prepare(&cookie, false)).collect();
        std::thread::scope(|s| {
            for node in &nodes {
                s.spawn(|| node.launch());
            }
        });
        let first = nodes[0].node.clone();
        for node in &nodes[1..] {
            node.must(&["stop_app"]);
            node.must(&["join_cluster", &first]);
            node.must(&["start_app"]);
            node.await_startup();
        }
        let status = nodes[0].must(&["cluster_status"]);
        for node in &nodes {
            assert!(
                status.contains(&node.node),
                "{} not in the cluster: {status}",
                node.node
            );
        }
        Cluster { nodes }
    }

    /// `rabbit://guest:guest@127.0.0.1:<p1>,guest:guest@127.0.0.1:<p2>,.../<query>`.
    pub fn url(&self, query: &str) -> String {
        let hosts: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("guest:guest@127.0.0.1:{}", n.port))
            .collect();
        format!("rabbit://{}/{query}", hosts.join(","))
    }

    /// The node holding the connection whose client properties contain `name` (its connection
    /// process id names the node), asked of any node that is up.
    pub fn node_of(&self, name: &str) -> Option<usize> {
        let up = self.nodes.iter().find(|n| n.listening())?;
        let out = up.ctl(&["list_connections", "-q", "pid", "client_properties"]);
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text.lines().find(|l| l.contains(name))?;
        self.nodes
            .iter()
            .position(|n| line.contains(&format!("<{}.", n.node)))
    }

    /// The node through which queue `queue` is consumed: the node of the consumer's channel. A
    /// Python oslo server holds several connections (a listener and a pool for replies); the
    /// node that matters for its service is the listener's.
    pub fn consumer_node(&self, queue: &str) -> Option<usize> {
        let up = self.nodes.iter().find(|n| n.listening())?;
        let out = up.ctl(&["list_consumers", "-q", "queue_name", "channel_pid"]);
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(queue))?;
        self.nodes
            .iter()
            .position(|n| line.contains(&format!("<{}.", n.node)))
    }

    /// Waits (up to 30 s) until node `i` can go without a quorum queue losing its majority:
    /// a node restarted a moment ago may still be catching up.
    pub fn await_not_quorum_critical(&self, i: usize) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !self.nodes[i]
            .cli("rabbitmq-queues", &["check_if_node_is_quorum_critical"])
            .status
            .success()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "node {i} stays quorum critical"
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
}
