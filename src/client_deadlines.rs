//! How long a client may keep Pylon waiting. Pingora's own read timeout
//! restarts with every read, so a client that sends one byte a minute holds
//! a connection for ever; these deadlines bound the whole request head and
//! the pace of the request body instead, as nginx's `client_header_timeout`
//! and Apache's `mod_reqtimeout` do.
//!
//! Pure bookkeeping: the caller reports what happened on the socket and when,
//! and learns whether the client is out of time and when to look again.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// From the accept (first request) or the first byte (later requests on
    /// a kept-alive connection) to the end of the request head.
    pub header_timeout: Duration,
    /// Time the client may make Pylon wait for body bytes, on top of what
    /// `body_min_rate` earns it.
    pub body_timeout: Duration,
    /// Every `body_min_rate` bytes received buy another second of waiting;
    /// 0 leaves `body_timeout` as a plain budget.
    pub body_min_rate: u64,
}

/// The part of a request the client owes Pylon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owed {
    /// A request head, due by the deadline.
    Head { due: Instant },
    /// A request body. Only time spent waiting on the client counts: while
    /// the upstream is slow to take the body Pylon does not read, and that
    /// is not the client's fault. With `Expect: 100-continue` the client
    /// rightly waits for the upstream's go-ahead, so the clock starts at the
    /// first body byte (`started`); until then Pingora's per-read timeout
    /// is the bound.
    Body {
        received: u64,
        waited: Duration,
        waiting_since: Option<Instant>,
        started: bool,
    },
    /// Nothing with a deadline: between requests (the keep-alive timeout
    /// applies), while the response is sent, or a tunnel after `101`.
    Nothing,
    /// Between requests; the first byte starts the next head's deadline.
    NextRequest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Late {
    Head,
    Body,
}

impl std::fmt::Display for Late {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Late::Head => "client sent the request head too slowly",
            Late::Body => "client sent the request body too slowly",
        })
    }
}

#[derive(Debug, Clone)]
pub struct Clock {
    policy: Policy,
    owed: Owed,
}

impl Clock {
    /// A new connection: the first request head is due `header_timeout`
    /// after the accept.
    pub fn accepted(policy: Policy, now: Instant) -> Self {
        Clock {
            policy,
            owed: Owed::Head {
                due: now + policy.header_timeout,
            },
        }
    }

    pub fn owed(&self) -> Owed {
        self.owed
    }

    /// The request head was parsed; a body follows or not, and the client
    /// may wait for `100 Continue` before sending it.
    pub fn head_done(&mut self, body_follows: bool, expects_continue: bool) {
        self.owed = if body_follows {
            Owed::Body {
                received: 0,
                waited: Duration::ZERO,
                waiting_since: None,
                started: !expects_continue,
            }
        } else {
            Owed::Nothing
        };
    }

    /// The whole body arrived (or will not be read).
    pub fn body_done(&mut self) {
        if matches!(self.owed, Owed::Body { .. }) {
            self.owed = Owed::Nothing;
        }
    }

    /// The response is complete; the connection may carry another request.
    pub fn request_done(&mut self) {
        self.owed = Owed::NextRequest;
    }

    /// A read returned `n > 0` bytes.
    pub fn data(&mut self, now: Instant, n: usize) -> Result<(), Late> {
        match &mut self.owed {
            Owed::NextRequest => {
                self.owed = Owed::Head {
                    due: now + self.policy.header_timeout,
                };
                Ok(())
            }
            Owed::Head { due } => {
                if now >= *due {
                    Err(Late::Head)
                } else {
                    Ok(())
                }
            }
            Owed::Body {
                received,
                waited,
                waiting_since,
                started,
            } => {
                if let Some(since) = waiting_since.take() {
                    if *started {
                        *waited += now.saturating_duration_since(since);
                    }
                }
                *started = true;
                *received = received.saturating_add(n as u64);
                Ok(())
            }
            Owed::Nothing => Ok(()),
        }
    }

    /// A read found nothing to read. `Ok(Some(t))`: look again at `t` if
    /// nothing arrives before; `Ok(None)`: no deadline runs.
    pub fn waiting(&mut self, now: Instant) -> Result<Option<Instant>, Late> {
        match &mut self.owed {
            Owed::Head { due } => {
                if now >= *due {
                    Err(Late::Head)
                } else {
                    Ok(Some(*due))
                }
            }
            Owed::Body { started: false, .. } => Ok(None),
            Owed::Body {
                received,
                waited,
                waiting_since,
                started: true,
            } => {
                let since = *waiting_since.get_or_insert(now);
                let earned = if self.policy.body_min_rate == 0 {
                    Duration::ZERO
                } else {
                    Duration::from_secs_f64(*received as f64 / self.policy.body_min_rate as f64)
                };
                let budget = self.policy.body_timeout.saturating_add(earned);
                let spent = waited.saturating_add(now.saturating_duration_since(since));
                if spent >= budget {
                    Err(Late::Body)
                } else {
                    Ok(Some(now + (budget - spent)))
                }
            }
            Owed::Nothing | Owed::NextRequest => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: Policy = Policy {
        header_timeout: Duration::from_secs(10),
        body_timeout: Duration::from_secs(30),
        body_min_rate: 500,
    };

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn first_head_is_due_after_the_accept_however_it_dribbles() {
        let t0 = Instant::now();
        let mut c = Clock::accepted(POLICY, t0);
        assert_eq!(c.waiting(t0), Ok(Some(t0 + s(10))));
        for i in 1..10 {
            assert_eq!(c.data(t0 + s(i), 1), Ok(()));
            assert_eq!(c.waiting(t0 + s(i)), Ok(Some(t0 + s(10))));
        }
        assert_eq!(c.waiting(t0 + s(10)), Err(Late::Head));
        assert_eq!(c.data(t0 + s(11), 1), Err(Late::Head));
    }

    #[test]
    fn idle_keepalive_has_no_deadline_until_the_next_request_starts() {
        let t0 = Instant::now();
        let mut c = Clock::accepted(POLICY, t0);
        c.head_done(false, false);
        assert_eq!(c.waiting(t0 + s(100)), Ok(None));
        c.request_done();
        assert_eq!(c.waiting(t0 + s(1000)), Ok(None));
        c.data(t0 + s(1000), 3).unwrap();
        assert_eq!(c.waiting(t0 + s(1001)), Ok(Some(t0 + s(1010))));
        assert_eq!(c.waiting(t0 + s(1010)), Err(Late::Head));
    }

    #[test]
    fn body_budget_grows_with_bytes_received() {
        let t0 = Instant::now();
        let mut c = Clock::accepted(POLICY, t0);
        c.head_done(true, false);
        // Waits 20 s, then 5,000 bytes buy 10 s more: 30 + 10 - 20 = 20 s left.
        assert_eq!(c.waiting(t0), Ok(Some(t0 + s(30))));
        c.data(t0 + s(20), 5000).unwrap();
        assert_eq!(c.waiting(t0 + s(20)), Ok(Some(t0 + s(40))));
        assert_eq!(c.waiting(t0 + s(39)), Ok(Some(t0 + s(40))));
        assert_eq!(c.waiting(t0 + s(40)), Err(Late::Body));
    }

    #[test]
    fn time_not_spent_waiting_on_the_client_is_free() {
        // Pylon stops reading while the upstream is slow; those minutes do
        // not count against the client.
        let t0 = Instant::now();
        let mut c = Clock::accepted(POLICY, t0);
        c.head_done(true, false);
        c.data(t0 + s(1), 1 << 20).unwrap();
        // Next read only after 10 minutes of upstream back-pressure.
        assert!(c.waiting(t0 + s(600)).is_ok());
        c.data(t0 + s(601), 1).unwrap();
        assert!(c.waiting(t0 + s(602)).is_ok());
    }

    #[test]
    fn a_client_slower_than_the_minimum_rate_runs_out() {
        let t0 = Instant::now();
        let mut c = Clock::accepted(POLICY, t0);
        c.head_done(true, false);
        let mut now = t0;
        let mut late = None;
        // 250 B/s: half the minimum rate.
        for _ in 0..1000 {
            if let Err(e) = c.waiting(now) {
                late = Some((e, now));
                break;
            }
            now += s(1);
            c.data(now, 250).unwrap();
        }
        let (e, at) = late.expect("a slow body must run out of time");
        assert_eq!(e, Late::Body);
        // 30 s + t/2 = t: out after about a minute.
        let secs = at.duration_since(t0).as_secs();
        assert!((58..=62).contains(&secs), "ran out after {secs} s");
    }

    #[test]
    fn body_done_stops_the_body_clock() {
        let t0 = Instant::now();
        let mut c = Clock::accepted(POLICY, t0);
        c.head_done(true, false);
        c.body_done();
        assert_eq!(c.waiting(t0 + s(1000)), Ok(None));
        // And a late body_done after request_done does not undo it.
        c.request_done();
        c.body_done();
        assert_eq!(c.owed(), Owed::NextRequest);
    }

    #[test]
    fn with_expect_continue_the_body_clock_starts_at_the_first_byte() {
        let t0 = Instant::now();
        let mut c = Clock::accepted(POLICY, t0);
        c.head_done(true, true);
        // The upstream takes its time to say 100 Continue; no deadline runs.
        assert_eq!(c.waiting(t0 + s(100)), Ok(None));
        c.data(t0 + s(120), 1000).unwrap();
        // From the first byte on, the ordinary budget: 30 s + 2 s earned.
        assert_eq!(c.waiting(t0 + s(120)), Ok(Some(t0 + s(152))));
        assert_eq!(c.waiting(t0 + s(152)), Err(Late::Body));
    }

    #[test]
    fn zero_rate_is_a_plain_budget() {
        let p = Policy {
            body_min_rate: 0,
            ..POLICY
        };
        let t0 = Instant::now();
        let mut c = Clock::accepted(p, t0);
        c.head_done(true, false);
        c.waiting(t0).unwrap();
        c.data(t0 + s(29), 1 << 30).unwrap();
        c.waiting(t0 + s(29)).unwrap();
        assert_eq!(c.waiting(t0 + s(30)), Err(Late::Body));
    }
}
