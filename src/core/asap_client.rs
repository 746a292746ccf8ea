//! The PE/PU side of ASAP towards the home registrar (sans-I/O): requests and their responses
//! (matched first-in-first-out by type, as rsplib does), keep-alive answers for the PEs this
//! endpoint registered, and the PU's handlespace cache.
//!
//! The library thread (`crate::library`) owns the association and feeds this state machine
//! with received bytes and the time; it sends what comes out.

use std::collections::{BTreeSet, VecDeque};

use crate::core::handlespace::{self, Handlespace, Micros, Registration};
use crate::core::types::{PeId, PoolHandle};
use crate::core::wire::{self, asap, AsapBody, AsapMessage};

/// Identifies one request of the API.
pub type RequestId = u64;

/// A request that needs the registrar's answer.
#[derive(Clone, Debug, PartialEq)]
pub enum Operation {
    Register {
        pool: PoolHandle,
        element: wire::PoolElement,
    },
    Deregister {
        pool: PoolHandle,
        pe: PeId,
    },
    Resolve {
        pool: PoolHandle,
        /// Handle Resolution option (items wanted); `None` = the registrar's default.
        items: Option<u32>,
    },
}

/// A successful answer.
#[derive(Clone, Debug, PartialEq)]
pub enum Answer {
    Registered(PeId),
    Deregistered,
    /// The PEs the registrar returned (already put into the cache).
    Resolved(Vec<wire::PoolElement>),
}

/// Why a request failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("no answer from the registrar in time")]
    Timeout,
    #[error("the registrar refused: cause 0x{0:04x}")]
    Refused(u16),
    #[error("the connection to the registrar was lost")]
    Disconnected,
    #[error("no registrar could be reached")]
    NoRegistrar,
    #[error("cannot send to the registrar")]
    SendFailed,
    #[error("the request cannot be encoded: {0}")]
    Encode(String),
}

/// Settings (µs).
#[derive(Clone, Copy, Debug)]
pub struct ClientConfig {
    pub response_timeout: Micros,
    pub cache_timeout: Micros,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            response_timeout: 1_500_000,
            cache_timeout: 5_000_000,
        }
    }
}

#[derive(Debug)]
struct Pending {
    id: RequestId,
    response_type: u8,
    deadline: Micros,
}

/// What came out of handling input.
#[derive(Debug, Default, PartialEq)]
pub struct Effects {
    /// Messages to send to the registrar, in order.
    pub send: Vec<Vec<u8>>,
    /// Finished requests.
    pub done: Vec<(RequestId, Result<Answer, RequestError>)>,
    /// The association is unusable (protocol violation, timeout): drop it and re-hunt.
    pub drop_association: bool,
}

/// The client state machine.
pub struct AsapClient {
    cfg: ClientConfig,
    pending: VecDeque<Pending>,
    own: BTreeSet<(PoolHandle, PeId)>,
    cache: Handlespace,
}

impl AsapClient {
    pub fn new(cfg: ClientConfig, seed: u64) -> Self {
        AsapClient {
            cfg,
            pending: VecDeque::new(),
            own: BTreeSet::new(),
            cache: Handlespace::with_seed(handlespace::Config::pu_cache(), seed),
        }
    }

    pub fn config(&self) -> &ClientConfig {
        &self.cfg
    }

    /// PEs registered through this client (answered keep-alives, deregistered at clean-up).
    pub fn own_pes(&self) -> impl Iterator<Item = &(PoolHandle, PeId)> {
        self.own.iter()
    }

    /// Requests waiting for an answer.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Encodes `op` and remembers it as pending; returns the bytes to send.
    pub fn request(
        &mut self,
        now: Micros,
        id: RequestId,
        op: Operation,
    ) -> Result<Vec<u8>, RequestError> {
        let (body, response_type) = match op {
            Operation::Register { pool, element } => (
                AsapBody::Registration {
                    pool_handle: pool,
                    element,
                },
                asap::REGISTRATION_RESPONSE,
            ),
            Operation::Deregister { pool, pe } => {
                self.own.remove(&(pool.clone(), pe));
                (
                    AsapBody::Deregistration {
                        pool_handle: pool,
                        pe_id: pe,
                    },
                    asap::DEREGISTRATION_RESPONSE,
                )
            }
            Operation::Resolve { pool, items } => (
                AsapBody::HandleResolution {
                    pool_handle: pool,
                    items,
                },
                asap::HANDLE_RESOLUTION_RESPONSE,
            ),
        };
        let bytes = AsapMessage::new(body)
            .to_bytes()
            .map_err(|e| RequestError::Encode(e.to_string()))?;
        self.pending.push_back(Pending {
            id,
            response_type,
            deadline: now + self.cfg.response_timeout,
        });
        Ok(bytes)
    }

    /// An Endpoint Unreachable report (no answer expected); also drops the PE from the cache.
    pub fn unreachable(&mut self, pool: &PoolHandle, pe: PeId) -> Result<Vec<u8>, RequestError> {
        self.cache.deregister(pool, pe);
        AsapMessage::new(AsapBody::EndpointUnreachable {
            pool_handle: pool.clone(),
            pe_id: pe,
        })
        .to_bytes()
        .map_err(|e| RequestError::Encode(e.to_string()))
    }

    /// One message from the registrar.
    pub fn received(&mut self, now: Micros, bytes: &[u8]) -> Effects {
        let mut fx = Effects::default();
        let msg = match AsapMessage::decode(bytes) {
            Ok(d) => d.message,
            Err(_) => {
                fx.drop_association = true;
                self.fail_all(RequestError::Disconnected, &mut fx);
                return fx;
            }
        };
        let msg_type = msg.msg_type();
        match msg.body {
            AsapBody::EndpointKeepAlive {
                pool_handle, pe_id, ..
            } => {
                let ids: Vec<PeId> = match pe_id {
                    Some(id) => vec![id],
                    None => self
                        .own
                        .iter()
                        .filter(|(p, _)| *p == pool_handle)
                        .map(|(_, id)| *id)
                        .collect(),
                };
                for id in ids {
                    if let Ok(b) = AsapMessage::new(AsapBody::EndpointKeepAliveAck {
                        pool_handle: pool_handle.clone(),
                        pe_id: id,
                    })
                    .to_bytes()
                    {
                        fx.send.push(b);
                    }
                }
            }
            AsapBody::RegistrationResponse {
                pool_handle,
                pe_id,
                error,
            } => {
                let result = match error {
                    None if msg.flags & asap::FLAG_REJECT == 0 => {
                        self.own.insert((pool_handle, pe_id));
                        Ok(Answer::Registered(pe_id))
                    }
                    Some(e) => Err(RequestError::Refused(e.code())),
                    None => Err(RequestError::Refused(wire::cause::INVALID_VALUES)),
                };
                self.complete(msg_type, result, &mut fx);
            }
            AsapBody::DeregistrationResponse { error, .. } => {
                let result = match error {
                    None => Ok(Answer::Deregistered),
                    Some(e) => Err(RequestError::Refused(e.code())),
                };
                self.complete(msg_type, result, &mut fx);
            }
            AsapBody::HandleResolutionResponse {
                pool_handle,
                elements,
                error,
                ..
            } => {
                let result = match error {
                    Some(e) => {
                        self.cache_forget_pool(&pool_handle);
                        Err(RequestError::Refused(e.code()))
                    }
                    None => {
                        for e in &elements {
                            self.cache_insert(now, &pool_handle, e);
                        }
                        Ok(Answer::Resolved(elements))
                    }
                };
                self.complete(msg_type, result, &mut fx);
            }
            AsapBody::ServerAnnounce { .. } => {}
            _ => {
                // An ASAP Error or a message a registrar does not send: as rsplib, give up on
                // this association.
                fx.drop_association = true;
                self.fail_all(RequestError::Disconnected, &mut fx);
            }
        }
        fx
    }

    fn complete(
        &mut self,
        response_type: u8,
        result: Result<Answer, RequestError>,
        fx: &mut Effects,
    ) {
        match self
            .pending
            .iter()
            .position(|p| p.response_type == response_type)
        {
            Some(i) => {
                let p = self.pending.remove(i).expect("index valid");
                fx.done.push((p.id, result));
            }
            None => {
                // A response nobody asked for: the association is out of step.
                fx.drop_association = true;
                self.fail_all(RequestError::Disconnected, fx);
            }
        }
    }

    fn fail_all(&mut self, why: RequestError, fx: &mut Effects) {
        for p in self.pending.drain(..) {
            fx.done.push((p.id, Err(why.clone())));
        }
    }

    /// The association went away: every pending request fails.
    pub fn disconnected(&mut self) -> Effects {
        let mut fx = Effects::default();
        self.fail_all(RequestError::Disconnected, &mut fx);
        fx
    }

    /// Requests whose answer is overdue fail; the association is then dropped (as rsplib).
    pub fn poll(&mut self, now: Micros) -> Effects {
        let mut fx = Effects::default();
        if self.pending.iter().any(|p| p.deadline <= now) {
            let (late, keep): (Vec<Pending>, Vec<Pending>) =
                self.pending.drain(..).partition(|p| p.deadline <= now);
            self.pending = keep.into();
            for p in late {
                fx.done.push((p.id, Err(RequestError::Timeout)));
            }
            fx.drop_association = true;
            self.fail_all(RequestError::Disconnected, &mut fx);
        }
        fx
    }

    /// The earliest response deadline.
    pub fn next_deadline(&self) -> Option<Micros> {
        self.pending.iter().map(|p| p.deadline).min()
    }

    // ----------------------------------------------------------------------------- cache

    fn cache_insert(&mut self, now: Micros, pool: &PoolHandle, e: &wire::PoolElement) {
        let reg = Registration {
            pe_id: e.id,
            home: e.home_registrar,
            registration_life_ms: e.registration_life.max(1),
            user_transport: e.user_transport.clone(),
            policy: e.policy,
            registrator_transport: None,
        };
        let expiry = now + self.cfg.cache_timeout;
        if self
            .cache
            .register_until(pool, reg.clone(), expiry)
            .is_err()
        {
            // The pool changed its policy or transport: start the cached pool afresh.
            self.cache_forget_pool(pool);
            let _ = self.cache.register_until(pool, reg, expiry);
        }
    }

    fn cache_forget_pool(&mut self, pool: &PoolHandle) {
        let ids: Vec<PeId> = self.cache.pool_elements(pool).map(|pe| pe.id()).collect();
        for id in ids {
            self.cache.deregister(pool, id);
        }
    }

    /// Purges expired cache entries, then selects one PE of `pool` by the pool's policy.
    pub fn cache_select(&mut self, now: Micros, pool: &PoolHandle) -> Option<wire::PoolElement> {
        while self.cache.pop_expired(now).is_some() {}
        let pe = self
            .cache
            .handle_resolution(pool, 1)
            .ok()?
            .into_iter()
            .next()?;
        let mut e = wire::PoolElement::new(pe.id(), pe.user_transport().clone(), pe.policy());
        e.home_registrar = pe.home();
        e.registration_life = pe.registration_life_ms();
        Some(e)
    }

    /// Removes one PE from the cache.
    pub fn cache_remove(&mut self, pool: &PoolHandle, pe: PeId) {
        self.cache.deregister(pool, pe);
    }

    /// Number of cached PEs.
    pub fn cache_len(&self) -> usize {
        self.cache.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::types::{
        PolicyInfo, PolicyType, RegistrarId, TransportAddress, TransportProtocol,
    };
    use crate::core::wire::OperationError;

    fn element(id: u32) -> wire::PoolElement {
        let t = TransportAddress::new(
            TransportProtocol::Tcp,
            7,
            vec!["127.0.0.1".parse().unwrap()],
        );
        let mut e = wire::PoolElement::new(PeId(id), t, PolicyInfo::new(PolicyType::RoundRobin));
        e.registration_life = 1000;
        e.home_registrar = RegistrarId(9);
        e
    }

    fn bytes(body: AsapBody, flags: u8) -> Vec<u8> {
        AsapMessage::with_flags(body, flags).to_bytes().unwrap()
    }

    #[test]
    fn responses_are_matched_by_type_in_order_and_keepalives_answered() {
        let mut c = AsapClient::new(ClientConfig::default(), 1);
        let pool = PoolHandle::from("P");
        c.request(
            0,
            1,
            Operation::Register {
                pool: pool.clone(),
                element: element(5),
            },
        )
        .unwrap();
        c.request(
            0,
            2,
            Operation::Resolve {
                pool: pool.clone(),
                items: None,
            },
        )
        .unwrap();
        // The resolution answer arrives first: it completes request 2 only.
        let fx = c.received(
            1,
            &bytes(
                AsapBody::HandleResolutionResponse {
                    pool_handle: pool.clone(),
                    policy: None,
                    elements: vec![element(5), element(6)],
                    error: None,
                },
                0,
            ),
        );
        assert!(matches!(&fx.done[..], [(2, Ok(Answer::Resolved(v)))] if v.len() == 2));
        assert_eq!(c.cache_len(), 2);
        let fx = c.received(
            1,
            &bytes(
                AsapBody::RegistrationResponse {
                    pool_handle: pool.clone(),
                    pe_id: PeId(5),
                    error: None,
                },
                0,
            ),
        );
        assert_eq!(fx.done, vec![(1, Ok(Answer::Registered(PeId(5))))]);
        // Keep-alive without a PE id: acked for every own PE of that pool.
        let fx = c.received(
            2,
            &bytes(
                AsapBody::EndpointKeepAlive {
                    server_id: RegistrarId(9),
                    pool_handle: pool.clone(),
                    pe_id: None,
                },
                0,
            ),
        );
        assert_eq!(fx.send.len(), 1);
        assert!(matches!(
            AsapMessage::decode(&fx.send[0]).unwrap().message.body,
            AsapBody::EndpointKeepAliveAck { pe_id: PeId(5), .. }
        ));
    }

    #[test]
    fn refusals_timeouts_and_strays() {
        let mut c = AsapClient::new(ClientConfig::default(), 1);
        let pool = PoolHandle::from("P");
        c.request(
            0,
            1,
            Operation::Register {
                pool: pool.clone(),
                element: element(5),
            },
        )
        .unwrap();
        let fx = c.received(
            1,
            &bytes(
                AsapBody::RegistrationResponse {
                    pool_handle: pool.clone(),
                    pe_id: PeId(5),
                    error: Some(OperationError::new(5, &[])),
                },
                asap::FLAG_REJECT,
            ),
        );
        assert_eq!(fx.done, vec![(1, Err(RequestError::Refused(5)))]);
        assert_eq!(c.own_pes().count(), 0);
        c.request(
            10,
            2,
            Operation::Deregister {
                pool: pool.clone(),
                pe: PeId(5),
            },
        )
        .unwrap();
        assert!(c.poll(10 + 1_499_999).done.is_empty());
        let fx = c.poll(10 + 1_500_000);
        assert_eq!(fx.done, vec![(2, Err(RequestError::Timeout))]);
        assert!(fx.drop_association);
        // A response nobody waits for drops the association.
        let fx = c.received(
            20,
            &bytes(
                AsapBody::DeregistrationResponse {
                    pool_handle: pool,
                    pe_id: PeId(5),
                    error: None,
                },
                0,
            ),
        );
        assert!(fx.drop_association);
    }

    #[test]
    fn cache_expires_and_selects_round_robin() {
        let mut c = AsapClient::new(
            ClientConfig {
                cache_timeout: 100,
                ..Default::default()
            },
            1,
        );
        let pool = PoolHandle::from("P");
        c.request(
            0,
            1,
            Operation::Resolve {
                pool: pool.clone(),
                items: None,
            },
        )
        .unwrap();
        c.received(
            0,
            &bytes(
                AsapBody::HandleResolutionResponse {
                    pool_handle: pool.clone(),
                    policy: None,
                    elements: vec![element(1), element(2)],
                    error: None,
                },
                0,
            ),
        );
        let a = c.cache_select(10, &pool).unwrap().id;
        let b = c.cache_select(11, &pool).unwrap().id;
        assert_ne!(a, b, "round robin alternates");
        c.unreachable(&pool, a).unwrap();
        assert_eq!(c.cache_len(), 1);
        assert!(c.cache_select(100, &pool).is_none(), "expired");
    }
}
