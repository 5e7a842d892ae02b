//! Any bytes on any topic: the strict decoder must answer with a value or an error, never panic,
//! and whatever it accepts must encode and decode back to itself.
#![no_main]

use common::codec;
use common::events::{ExecEvent, IntentEvent, MarketEvent, OfiEvent, Payload};
use libfuzzer_sys::fuzz_target;

fn round_trip<P: Payload + PartialEq + std::fmt::Debug + 'static>(data: &[u8]) {
    if let Ok(env) = codec::decode::<P>(data) {
        let again = codec::decode::<P>(&codec::encode(&env)).expect("an accepted record re-encodes");
        assert_eq!(again, env);
    }
}

fuzz_target!(|data: &[u8]| {
    round_trip::<MarketEvent>(data);
    round_trip::<OfiEvent>(data);
    round_trip::<IntentEvent>(data);
    round_trip::<ExecEvent>(data);
});
