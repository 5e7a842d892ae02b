//! The one interface of the consuming planes' cores: a decoded input record in, the records it
//! causes out. The Strategy and Order Planes' cores implement [`Core`]; the shared consumer shell
//! (`kafka::shell`) drives them from Kafka, and the backtest drives them in one process, through
//! the same calls.
//!
//! A core takes its `Clock` when it is built and reads time from nothing else, so the same inputs
//! give the same outputs under either driver (a backtest gives its cores a fixed clock).

use crate::codec::{self, DecodeError};
use crate::events::{Envelope, ExecEvent, IntentEvent, MarketEvent, OfiEvent, Payload};
use crate::topics::{EXEC_REPORTS, MARKET_EVENTS, OFI_EVENTS, ORDER_INTENTS};

/// One of the pipeline's four topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    /// `market_events`.
    Market,
    /// `ofi_events`.
    Ofi,
    /// `order_intents`.
    Intent,
    /// `exec_reports`.
    Exec,
}

impl Topic {
    /// The topic's name before the deployment's prefix (a `common::topics` constant).
    pub const fn name(self) -> &'static str {
        match self {
            Self::Market => MARKET_EVENTS,
            Self::Ofi => OFI_EVENTS,
            Self::Intent => ORDER_INTENTS,
            Self::Exec => EXEC_REPORTS,
        }
    }

    /// Decodes a record of this topic with the strict codec.
    pub fn decode(self, payload: &[u8]) -> Result<Event, DecodeError> {
        Ok(match self {
            Self::Market => Event::Market(codec::decode(payload)?),
            Self::Ofi => Event::Ofi(codec::decode(payload)?),
            Self::Intent => Event::Intent(codec::decode(payload)?),
            Self::Exec => Event::Exec(codec::decode(payload)?),
        })
    }
}

/// A decoded record of one of the four topics.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A `market_events` record.
    Market(Envelope<MarketEvent>),
    /// An `ofi_events` record.
    Ofi(Envelope<OfiEvent>),
    /// An `order_intents` record.
    Intent(Envelope<IntentEvent>),
    /// An `exec_reports` record.
    Exec(Envelope<ExecEvent>),
}

impl Event {
    /// The topic the record travels on.
    pub fn topic(&self) -> Topic {
        match self {
            Self::Market(_) => Topic::Market,
            Self::Ofi(_) => Topic::Ofi,
            Self::Intent(_) => Topic::Intent,
            Self::Exec(_) => Topic::Exec,
        }
    }
}

/// A plane's synchronous core as its drivers see it: it reads the records of [`INPUTS`] one at a
/// time and appends what each causes to `out`, all of it one payload family, published on
/// [`Payload::TOPIC`]. It does no IO and reads no wall clock.
///
/// [`INPUTS`]: Core::INPUTS
pub trait Core {
    /// The topics the core reads; a driver hands it records of these only.
    const INPUTS: &'static [Topic];
    /// What the core publishes.
    type Output: Payload + Send + Sync + 'static;
    /// What became of one input, for the driver's metrics and acknowledgements.
    type Outcome;

    /// Handles `input`, read at `position` in its partition (its offset; 0 where there is none,
    /// as in a backtest), appending the records it causes to `out`.
    fn handle(&mut self, input: &Event, position: u64, out: &mut Vec<Envelope<Self::Output>>) -> Self::Outcome;

    /// Answers a record of `topic` the strict decoder refused with `error`, where the core can
    /// (the Order core rejects a malformed intent whose id it can still read); whether it did.
    /// The record is counted and skipped either way.
    fn refused(
        &mut self,
        topic: Topic,
        payload: &[u8],
        error: &DecodeError,
        out: &mut Vec<Envelope<Self::Output>>,
    ) -> bool {
        let _ = (topic, payload, error, out);
        false
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a panic is the failure report

    use super::*;

    /// A cancel intent: the smallest record of a family.
    fn cancel() -> Envelope<IntentEvent> {
        Envelope {
            schema_version: crate::events::SCHEMA_VERSION,
            event_id: crate::types::EventId(uuid::Uuid::from_u64_pair(1, 1)),
            source: std::sync::Arc::new(crate::events::Source { plane: "test".into(), instance: "test".into() }),
            ts_event: crate::types::UnixNanos(1),
            ts_init: crate::types::UnixNanos(2),
            causation_id: None,
            payload: IntentEvent::Cancel(crate::events::CancelIntent {
                intent_id: crate::events::IntentId(uuid::Uuid::from_u64_pair(2, 2)),
                symbol: crate::types::Symbol::new("BTCUSDT").unwrap(),
            }),
        }
    }

    #[test]
    fn a_record_decodes_on_its_own_topic_only() {
        let mut record = Vec::new();
        codec::encode_into(&cancel(), &mut record);
        let event = Topic::Intent.decode(&record).unwrap();
        assert_eq!(event, Event::Intent(cancel()));
        assert_eq!(event.topic(), Topic::Intent);
        for other in [Topic::Market, Topic::Ofi, Topic::Exec] {
            let refused = other.decode(&record).unwrap_err();
            assert_eq!(refused.reason(), "unknown_event_type", "{other:?}");
        }
        assert_eq!(Topic::Intent.decode(b"").unwrap_err().reason(), "empty");
        assert_eq!(Topic::Intent.name(), ORDER_INTENTS);
    }
}
