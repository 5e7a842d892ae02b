//! What IB's error and notice codes mean for us, and what to do about each.

/// How the adapter reacts to an IB code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reaction {
    /// 1100: the gateway lost its connection to IB. Data stops; mark every symbol's window.
    ConnectivityLost,
    /// 1101: restored, data lost: every market-data subscription must be made again.
    RestoredDataLost,
    /// 1102: restored, data kept.
    RestoredDataKept,
    /// 326: another connection holds this client id; only the operator can fix it.
    ClientIdInUse,
    /// 420, 162, 100, 101, 10197: pacing, line or session limits: retry the request later,
    /// with back-off, never in a tight loop.
    RetryLater,
    /// 200, 354, 10167, …: the request cannot work as configured (unknown contract, no
    /// subscription): give the contract up and say so.
    GiveUp,
    /// 202: an order was cancelled (a confirmation).
    OrderCancelled,
    /// 201 and other order rejections.
    OrderRejected,
    /// 2100–2199 farm and status messages: log at info.
    Informational,
    /// Anything else: log and carry on.
    Other,
}

/// The reaction to `code`.
pub fn reaction(code: i32) -> Reaction {
    match code {
        1100 => Reaction::ConnectivityLost,
        1101 => Reaction::RestoredDataLost,
        1102 => Reaction::RestoredDataKept,
        326 => Reaction::ClientIdInUse,
        100 | 101 | 162 | 420 | 10197 => Reaction::RetryLater,
        200 | 203 | 321 | 354 | 10089 | 10090 | 10167 | 10168 => Reaction::GiveUp,
        202 => Reaction::OrderCancelled,
        201 | 103..=199 | 203..=399 => Reaction::OrderRejected,
        2100..=2199 => Reaction::Informational,
        _ => Reaction::Other,
    }
}

/// What the operator should do about `code`, when there is a clear remedy.
pub fn remedy(code: i32) -> Option<&'static str> {
    Some(match code {
        326 => {
            "another connection uses this IBKR_CLIENT_ID: set a different IBKR_CLIENT_ID or close the other API client"
        }
        1100 => "the gateway lost its connection to IB; it reconnects on its own, data resumes on 1101/1102",
        420 | 162 => {
            "pacing violation: requests are retried with back-off; lower the number of contracts if it persists"
        }
        10197 => "market data is in use by a competing live session (TWS or mobile login on the same user)",
        100 | 101 => "message rate or market-data line limit reached: fewer contracts or more market-data lines",
        200 => {
            "no security definition: check the contract (symbol, sec_type, exchange, currency) in [[ibkr.contracts]]"
        }
        354 | 10089 | 10090 | 10167 | 10168 => "no market-data subscription for this contract on the account",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_reactions() {
        let cases = [
            (1100, Reaction::ConnectivityLost),
            (1101, Reaction::RestoredDataLost),
            (1102, Reaction::RestoredDataKept),
            (326, Reaction::ClientIdInUse),
            (420, Reaction::RetryLater),
            (162, Reaction::RetryLater),
            (10197, Reaction::RetryLater),
            (200, Reaction::GiveUp),
            (202, Reaction::OrderCancelled),
            (201, Reaction::OrderRejected),
            (2104, Reaction::Informational),
            (9999, Reaction::Other),
        ];
        for (code, expected) in cases {
            assert_eq!(reaction(code), expected, "code {code}");
        }
    }

    #[test]
    fn client_id_in_use_names_the_setting() {
        assert!(remedy(326).is_some_and(|r| r.contains("IBKR_CLIENT_ID")));
        assert_eq!(remedy(2104), None);
    }
}
