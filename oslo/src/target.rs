//! `Target`: where a message goes, with oslo.messaging's vocabulary.

/// The destination of an RPC call or cast (oslo `oslo_messaging.Target`).
///
/// ```
/// use fjord_oslo::Target;
/// let t = Target::new("compute").server("host1").version("1.3");
/// assert_eq!(t.topic, "compute");
/// assert_eq!(t.routing_key(), "compute.host1");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Target {
    /// The exchange; `None` means the control exchange (`openstack` by default).
    pub exchange: Option<String>,
    /// The topic, i.e. the service.
    pub topic: String,
    /// One server listening on the topic, or `None` for any of them.
    pub server: Option<String>,
    /// The endpoint namespace; `None` is the default (null) namespace.
    pub namespace: Option<String>,
    /// The requested API version, `"M.m"` or `"M.m.r"`; `None` is sent as absent (servers read 1.0).
    pub version: Option<String>,
    /// Cast to every server on the topic (casts only).
    pub fanout: bool,
}

impl Target {
    /// A target for `topic` with everything else unset.
    ///
    /// ```
    /// let t = fjord_oslo::Target::new("test");
    /// assert!(t.server.is_none() && !t.fanout);
    /// ```
    pub fn new(topic: impl Into<String>) -> Target {
        Target {
            topic: topic.into(),
            ..Target::default()
        }
    }

    /// Sets the exchange.
    ///
    /// ```
    /// let t = fjord_oslo::Target::new("t").exchange("nova");
    /// assert_eq!(t.exchange.as_deref(), Some("nova"));
    /// ```
    pub fn exchange(mut self, exchange: impl Into<String>) -> Target {
        self.exchange = Some(exchange.into());
        self
    }

    /// Directs messages to one server.
    ///
    /// ```
    /// let t = fjord_oslo::Target::new("t").server("s1");
    /// assert_eq!(t.server.as_deref(), Some("s1"));
    /// ```
    pub fn server(mut self, server: impl Into<String>) -> Target {
        self.server = Some(server.into());
        self
    }

    /// Sets the endpoint namespace.
    ///
    /// ```
    /// let t = fjord_oslo::Target::new("t").namespace("calc");
    /// assert_eq!(t.namespace.as_deref(), Some("calc"));
    /// ```
    pub fn namespace(mut self, namespace: impl Into<String>) -> Target {
        self.namespace = Some(namespace.into());
        self
    }

    /// Sets the requested version.
    ///
    /// ```
    /// let t = fjord_oslo::Target::new("t").version("1.1");
    /// assert_eq!(t.version.as_deref(), Some("1.1"));
    /// ```
    pub fn version(mut self, version: impl Into<String>) -> Target {
        self.version = Some(version.into());
        self
    }

    /// Makes casts go to every server on the topic.
    ///
    /// ```
    /// assert!(fjord_oslo::Target::new("t").fanout(true).fanout);
    /// ```
    pub fn fanout(mut self, fanout: bool) -> Target {
        self.fanout = fanout;
        self
    }

    /// The routing key of a topic publish: `<topic>` or `<topic>.<server>`.
    ///
    /// ```
    /// assert_eq!(fjord_oslo::Target::new("t").routing_key(), "t");
    /// ```
    pub fn routing_key(&self) -> String {
        match &self.server {
            Some(s) => format!("{}.{}", self.topic, s),
            None => self.topic.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_sets_fields() {
        let t = Target::new("t")
            .exchange("e")
            .server("s")
            .namespace("n")
            .version("2.1")
            .fanout(true);
        assert_eq!(
            t,
            Target {
                exchange: Some("e".into()),
                topic: "t".into(),
                server: Some("s".into()),
                namespace: Some("n".into()),
                version: Some("2.1".into()),
                fanout: true,
            }
        );
        assert_eq!(t.routing_key(), "t.s");
    }
}
