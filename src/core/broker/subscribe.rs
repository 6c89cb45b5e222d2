//! SUBSCRIBE and UNSUBSCRIBE: the session's subscriptions, the local trie, the routes other
//! shards must learn before the SUBACK goes out, and retained messages for new subscriptions.

use ahash::AHashMap;

use super::{Broker, ConnId, PendingReply, SessionKey};
use crate::core::filter::Filter;
use crate::core::link::encode_control;
use crate::core::session::Subscription;
use crate::core::store::Record;
use crate::protocol::topic::topic_levels;
use crate::protocol::{
    QoS, ReasonCode, RetainHandling, SubAck, Subscribe, SubscribeFilter, UnsubAck, Unsubscribe,
};

/// A subscription made by [`Broker::subscribe_one`].
struct Added {
    filter: Filter,
    /// This shard's first subscriber on the filter: the other shards must learn the route.
    new_route: bool,
    code: ReasonCode,
    /// The subscription, when its retained messages are to be sent.
    send_retained: Option<Subscription>,
}

impl Broker {
    pub(super) fn on_subscribe(&mut self, id: ConnId, key: SessionKey, mut subscribe: Subscribe) {
        if self.conns[&id].bridge {
            // What a bridge forwards must not come back to it, and it keeps retained as
            // retained (the options a 5.0 bridge would ask for).
            for f in &mut subscribe.filters {
                // No Local on a shared subscription is a protocol error (MQTT-3.8.3-4).
                f.options.no_local = !f.filter.starts_with("$share/");
                f.options.retain_as_published = true;
            }
        }
        let subscription_id = subscribe
            .properties
            .subscription_identifiers
            .first()
            .copied();
        if subscription_id.is_some() && !self.features.subscription_identifiers {
            return self.fail(
                id,
                ReasonCode::SubscriptionIdentifiersNotSupported,
                "subscription identifiers are not available",
            );
        }
        let version = self.conns[&id].link.version;
        let mut codes = vec![ReasonCode::UnspecifiedError; subscribe.filters.len()];
        // A filter given twice in one packet is one subscription: made where it first
        // appears, with the options it was last given (each later one replaces the earlier,
        // MQTT-3.8.4-3), and its work (routes, retained messages) done once.
        let mut last: AHashMap<&str, usize> = AHashMap::with_capacity(subscribe.filters.len());
        for (i, f) in subscribe.filters.iter().enumerate() {
            last.insert(&f.filter, i);
        }
        let mut made: AHashMap<&str, ReasonCode> = AHashMap::with_capacity(last.len());
        let mut new_routes = Vec::new();
        let mut relied_on = Vec::new();
        let mut retained_for = Vec::new();
        for (i, f) in subscribe.filters.iter().enumerate() {
            if let Some(&code) = made.get(&*f.filter) {
                codes[i] = code;
                continue;
            }
            let given = &subscribe.filters[last[&*f.filter]];
            let code = match self.subscribe_one(key, given, subscription_id) {
                Ok(added) => {
                    if added.new_route {
                        new_routes.push(added.filter.clone());
                    } else if let Some(sync) = self.router.add_in_flight(&added.filter) {
                        relied_on.push(sync);
                    }
                    if let Some(subscription) = added.send_retained {
                        retained_for.push((added.filter.text(), subscription));
                    }
                    added.code
                }
                Err(code) => code,
            };
            made.insert(&f.filter, code);
            codes[i] = code;
        }
        let properties = if codes.iter().any(|c| c.is_error()) {
            self.problem(id, "some subscriptions were refused")
        } else {
            Default::default()
        };
        let suback = SubAck {
            packet_id: subscribe.packet_id,
            codes,
            properties,
        };
        let suback = encode_control("SUBACK", version, |v, out| suback.write(v, out));
        // New routes must reach every shard before the SUBACK, and so must routes that
        // another SUBSCRIBE made and that are still on their way: a client that publishes
        // after the SUBACK must find the subscription wherever its publish lands.
        let mut waits: Vec<u64> = relied_on;
        if !new_routes.is_empty() {
            let sync = self.router.announce(new_routes);
            waits.push(sync);
        }
        self.queue_reply(PendingReply {
            conn: id,
            waits,
            reply: suback,
            retained_for,
        });
    }

    /// Checks and makes one subscription of a SUBSCRIBE; the reason code to refuse it with
    /// otherwise.
    fn subscribe_one(
        &mut self,
        key: SessionKey,
        f: &SubscribeFilter,
        subscription_id: Option<u32>,
    ) -> Result<Added, ReasonCode> {
        // Copied: the subscription outlives the read buffer the filter was decoded from.
        let filter = Filter::new(&f.filter);
        let inner = filter.topic_filter();
        if filter.is_shared() && !self.features.shared_subscriptions {
            return Err(ReasonCode::SharedSubscriptionsNotSupported);
        }
        if topic_levels(inner) > self.limits.max_topic_levels {
            return Err(ReasonCode::TopicFilterInvalid);
        }
        if !self.features.wildcard_subscriptions && inner.contains(['+', '#']) {
            return Err(ReasonCode::WildcardSubscriptionsNotSupported);
        }
        let session = self
            .sessions
            .get(&key)
            .ok_or(ReasonCode::UnspecifiedError)?;
        if session
            .acl
            .as_ref()
            .is_some_and(|acl| !acl.may_subscribe(inner))
        {
            return Err(ReasonCode::NotAuthorized);
        }
        let previous = session.subscriptions.get(&*f.filter).map(|s| s.since);
        if previous.is_none() && session.subscriptions.len() >= self.limits.max_subscriptions {
            tracing::info!(shard = self.shard, client = %session.client_id, "subscription limit reached");
            return Err(ReasonCode::QuotaExceeded);
        }
        let mut options = f.options;
        options.qos = options.qos.min(self.features.max_qos);
        let subscription = Subscription {
            options,
            id: subscription_id,
            since: previous.unwrap_or(self.now),
        };
        let session = self.sessions.get_mut(&key).expect("checked above");
        session.subscriptions.insert(filter.text(), subscription);
        if session.durable {
            let client_id = session.client_id.clone();
            self.journal(|| Record::Subscribe {
                client_id,
                filter: filter.text(),
                options,
                id: subscription_id.unwrap_or(0),
            });
        }
        let new_route = self.add_subscriber(&filter, key, subscription);
        // No retained messages for shared subscriptions (5.0, 3.8.4); for the others, as
        // Retain Handling says.
        let send_retained = !filter.is_shared()
            && match options.retain_handling {
                RetainHandling::OnSubscribe => true,
                RetainHandling::OnNewSubscribe => previous.is_none(),
                RetainHandling::Never => false,
            };
        Ok(Added {
            filter,
            new_route,
            code: match options.qos {
                QoS::AtMostOnce => ReasonCode::Success,
                QoS::AtLeastOnce => ReasonCode::GrantedQoS1,
                QoS::ExactlyOnce => ReasonCode::GrantedQoS2,
            },
            send_retained: send_retained.then_some(subscription),
        })
    }

    pub(super) fn on_unsubscribe(&mut self, id: ConnId, key: SessionKey, unsubscribe: Unsubscribe) {
        let mut codes = Vec::with_capacity(unsubscribe.filters.len());
        // Routes removed on other shards are acknowledged before the UNSUBACK, as for SUBACK:
        // a PUBLISH right after it then gets 0x10 (no matching subscribers) where it should.
        let mut removed_routes = Vec::new();
        for filter in &unsubscribe.filters {
            let existed = self
                .sessions
                .get_mut(&key)
                .is_some_and(|s| s.subscriptions.remove(filter).is_some());
            if existed {
                let filter = Filter::new(filter);
                if let Some(session) = self.sessions.get(&key).filter(|s| s.durable) {
                    let client_id = session.client_id.clone();
                    self.journal(|| Record::Unsubscribe {
                        client_id,
                        filter: filter.text(),
                    });
                }
                if self.remove_subscriber(&filter, key) {
                    removed_routes.push(filter.clone());
                }
                if filter.is_shared() {
                    self.redistribute_group(key, &filter);
                }
            }
            codes.push(if existed {
                ReasonCode::Success
            } else {
                ReasonCode::NoSubscriptionExisted
            });
        }
        let version = self.conns[&id].link.version;
        let unsuback = UnsubAck {
            packet_id: unsubscribe.packet_id,
            codes: if version.is_v5() { codes } else { Vec::new() },
            ..UnsubAck::default()
        };
        let unsuback = encode_control("UNSUBACK", version, |v, out| unsuback.write(v, out));
        let waits = if removed_routes.is_empty() {
            Vec::new()
        } else {
            vec![self.router.withdraw(removed_routes)]
        };
        self.queue_reply(PendingReply {
            conn: id,
            waits,
            reply: unsuback,
            retained_for: Vec::new(),
        });
    }
}
