//! A scripted fake TWS / IB Gateway for tests: it listens on 127.0.0.1:0 and speaks enough of the
//! TWS wire protocol (framing, handshake, protobuf messages of ibapi 5.x) that the real,
//! unmodified `ibapi` client connects to it.
//!
//! A test drives it: it reads what the client asked for ([`FakeGateway::wait_request`]) and sends
//! market data, fills and errors when it wants to. Orders are answered like a gateway would
//! (`OpenOrder` + `OrderStatus` on placement, error 202 + `Cancelled` on cancel), executions and
//! open orders are replayed on request, and [`FakeGateway::drop_connection`] with
//! [`FakeGateway::set_accepting`] simulates a gateway restart. Facts behind it:
//! `../shared/notes/ibkr-wire-facts.md` (the client's `orderRef` is tag 28 of `Order`, not 14).
//!
//! Frames the fake cannot decode are counted ([`FakeGateway::malformed_frames`]) and skipped.

pub mod proto;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

/// The server version the fake announces (ibapi 5.5.0 needs at least 213).
pub const SERVER_VERSION: i32 = 213;
/// Protobuf message ids go on the wire offset by this.
const PROTO_OFFSET: i32 = 200;
const MAX_FRAME: usize = 0x00FF_FFFF;

/// Incoming message ids (client → gateway).
mod req {
    pub const PLACE_ORDER: i32 = 3;
    pub const CANCEL_ORDER: i32 = 4;
    pub const OPEN_ORDERS: i32 = 5;
    pub const EXECUTIONS: i32 = 7;
    pub const MARKET_DEPTH: i32 = 10;
    pub const CANCEL_MARKET_DEPTH: i32 = 11;
    pub const START_API: i32 = 71;
    pub const TICK_BY_TICK: i32 = 97;
    pub const CANCEL_TICK_BY_TICK: i32 = 98;
}

/// Outgoing message ids (gateway → client).
mod resp {
    pub const ORDER_STATUS: i32 = 3;
    pub const ERROR: i32 = 4;
    pub const OPEN_ORDER: i32 = 5;
    pub const NEXT_VALID_ID: i32 = 9;
    pub const EXECUTION_DATA: i32 = 11;
    pub const MARKET_DEPTH: i32 = 12;
    pub const MANAGED_ACCOUNTS: i32 = 15;
    pub const OPEN_ORDER_END: i32 = 53;
    pub const EXECUTION_DATA_END: i32 = 55;
    pub const COMMISSION_REPORT: i32 = 59;
    pub const TICK_BY_TICK: i32 = 99;
}

/// A request the client sent, as the fake understood it.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// `startApi` with the client id.
    StartApi {
        /// Client id.
        client_id: i32,
    },
    /// Tick-by-tick data (`BidAsk`, `Last`, `AllLast`, `MidPoint`).
    TickByTick {
        /// Request id.
        req_id: i32,
        /// Contract symbol.
        symbol: String,
        /// Tick type.
        tick_type: String,
    },
    /// Tick-by-tick cancelled.
    CancelTickByTick {
        /// Request id.
        req_id: i32,
    },
    /// Market depth.
    MarketDepth {
        /// Request id.
        req_id: i32,
        /// Contract symbol.
        symbol: String,
        /// Rows.
        rows: i32,
    },
    /// Market depth cancelled.
    CancelMarketDepth {
        /// Request id.
        req_id: i32,
    },
    /// An order.
    PlaceOrder(PlacedOrder),
    /// A cancel.
    CancelOrder {
        /// Order id.
        order_id: i32,
    },
    /// Open orders requested.
    OpenOrders,
    /// Executions requested.
    Executions {
        /// Request id.
        req_id: i32,
    },
    /// Anything else, by message id.
    Other(i32),
}

/// An order as the client sent it.
#[derive(Debug, Clone, PartialEq)]
pub struct PlacedOrder {
    /// Order id.
    pub order_id: i32,
    /// Contract symbol.
    pub symbol: String,
    /// `BUY` or `SELL`.
    pub action: String,
    /// Total quantity, as sent.
    pub quantity: String,
    /// `MKT`, `LMT`, …
    pub order_type: String,
    /// Limit price.
    pub limit_price: Option<f64>,
    /// Time in force.
    pub tif: String,
    /// Account.
    pub account: String,
    /// The client's order reference.
    pub order_ref: String,
}

#[derive(Debug, Clone)]
struct OrderRecord {
    placed: PlacedOrder,
    status: String,
    filled: f64,
    client_id: i32,
}

#[derive(Debug, Clone)]
struct ExecRecord {
    order_id: i32,
    exec_id: String,
    shares: String,
    price: f64,
    commission: f64,
}

enum Out {
    Frame(Vec<u8>),
    Close,
}

#[derive(Default)]
struct State {
    requests: Vec<Request>,
    conn: Option<(u64, mpsc::UnboundedSender<Out>)>,
    conn_seq: u64,
    client_id: i32,
    connections: u64,
    accepting: bool,
    next_order_id: i32,
    accounts: String,
    client_id_in_use: bool,
    reject_next: BTreeMap<String, (i32, String)>,
    orders: BTreeMap<i32, OrderRecord>,
    executions: Vec<ExecRecord>,
    malformed: u64,
}

struct Shared {
    state: Mutex<State>,
    changed: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running fake gateway; stops when dropped.
pub struct FakeGateway {
    addr: String,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for FakeGateway {
    fn drop(&mut self) {
        self.task.abort();
        if let Some((_, tx)) = self.shared.lock().conn.take() {
            let _ = tx.send(Out::Close);
        }
    }
}

impl FakeGateway {
    /// Starts a gateway on a free loopback port managing account `DU1234567`, next order id 1.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_with("DU1234567", 1).await
    }

    /// Starts a gateway managing `accounts` (comma separated) whose next valid order id is
    /// `next_order_id`.
    pub async fn start_with(accounts: &str, next_order_id: i32) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?.to_string();
        let state = State { accepting: true, next_order_id, accounts: accounts.into(), ..State::default() };
        let shared = Arc::new(Shared { state: Mutex::new(state), changed: Notify::new() });
        let s = Arc::clone(&shared);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let accepting = s.lock().accepting;
                if accepting {
                    tokio::spawn(serve(Arc::clone(&s), stream));
                }
                // Not accepting: dropping the stream refuses the client like a gateway that is
                // restarting.
            }
        });
        Ok(Self { addr, shared, task })
    }

    /// `host:port` to connect to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.addr.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or(0)
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.shared.lock().requests.clone()
    }

    /// Completed handshakes so far.
    pub fn connections(&self) -> u64 {
        self.shared.lock().connections
    }

    /// Frames that could not be decoded.
    pub fn malformed_frames(&self) -> u64 {
        self.shared.lock().malformed
    }

    /// Waits until `done` holds for the gateway's state, or `timeout` passes; returns whether it
    /// held.
    async fn wait_until(&self, timeout: Duration, done: impl Fn(&State) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.changed.notified();
            if done(&self.shared.lock()) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return done(&self.shared.lock());
            }
        }
    }

    /// The `n`-th (0-based) request matching `pick`, waiting up to `timeout` for it.
    pub async fn wait_request(&self, n: usize, timeout: Duration, pick: impl Fn(&Request) -> bool) -> Option<Request> {
        let found = |s: &State| s.requests.iter().filter(|r| pick(r)).nth(n).cloned();
        self.wait_until(timeout, |s| found(s).is_some()).await;
        found(&self.shared.lock())
    }

    /// Waits until `n` handshakes have completed.
    pub async fn wait_connections(&self, n: u64, timeout: Duration) -> bool {
        self.wait_until(timeout, |s| s.connections >= n).await
    }

    /// Answers the next subscription request for `symbol` with error `code` instead of data.
    pub fn reject_next_subscription(&self, symbol: &str, code: i32, message: &str) {
        self.shared.lock().reject_next.insert(symbol.into(), (code, message.into()));
    }

    /// Refuses handshakes with error 326 (client id in use) while `in_use`.
    pub fn set_client_id_in_use(&self, in_use: bool) {
        self.shared.lock().client_id_in_use = in_use;
    }

    /// Accepts new connections or refuses them (a gateway that is down).
    pub fn set_accepting(&self, accepting: bool) {
        self.shared.lock().accepting = accepting;
    }

    /// Closes the client's connection, as a gateway restart does.
    pub fn drop_connection(&self) {
        if let Some((_, tx)) = self.shared.lock().conn.take() {
            let _ = tx.send(Out::Close);
        }
    }

    fn send(&self, id: i32, msg: &impl Message) {
        if let Some((_, tx)) = &self.shared.lock().conn {
            let _ = tx.send(Out::Frame(frame(id, msg)));
        }
    }

    /// Sends a frame that is not a valid message of its id (the client must survive it).
    pub fn send_garbage(&self, id: i32) {
        if let Some((_, tx)) = &self.shared.lock().conn {
            let mut body = (id + PROTO_OFFSET).to_be_bytes().to_vec();
            body.extend_from_slice(&[0xff, 0xff, 0xff]);
            let _ = tx.send(Out::Frame(length_prefixed(&body)));
        }
    }

    /// Sends an error (or notice) with `id` (a request or order id, or −1).
    pub fn send_error(&self, id: i32, code: i32, message: &str) {
        self.send(resp::ERROR, &error(id, code, message));
    }

    /// Sends a tick-by-tick bid/ask for request `req_id` at `time` (Unix seconds).
    pub fn send_bid_ask(&self, req_id: i32, time: i64, bid: f64, ask: f64, bid_size: &str, ask_size: &str) {
        let tick = proto::HistoricalTickBidAsk {
            time: Some(time),
            price_bid: Some(bid),
            price_ask: Some(ask),
            size_bid: Some(bid_size.into()),
            size_ask: Some(ask_size.into()),
        };
        let msg = proto::TickByTickData { req_id: Some(req_id), tick_type: Some(3), last: None, bid_ask: Some(tick) };
        self.send(resp::TICK_BY_TICK, &msg);
    }

    /// Sends a tick-by-tick trade for request `req_id` at `time` (Unix seconds).
    pub fn send_last(&self, req_id: i32, time: i64, price: f64, size: &str) {
        let tick = proto::HistoricalTickLast {
            time: Some(time),
            price: Some(price),
            size: Some(size.into()),
            exchange: Some("NYSE".into()),
        };
        let msg = proto::TickByTickData { req_id: Some(req_id), tick_type: Some(1), last: Some(tick), bid_ask: None };
        self.send(resp::TICK_BY_TICK, &msg);
    }

    /// Sends one market-depth row change: `operation` 0 insert, 1 update, 2 delete; `side` 0 ask,
    /// 1 bid.
    pub fn send_depth(&self, req_id: i32, position: i32, operation: i32, side: i32, price: f64, size: &str) {
        let data = proto::MarketDepthData {
            position: Some(position),
            operation: Some(operation),
            side: Some(side),
            price: Some(price),
            size: Some(size.into()),
        };
        self.send(resp::MARKET_DEPTH, &proto::MarketDepth { req_id: Some(req_id), data: Some(data) });
    }

    /// Executes `shares` of order `order_id` at `price`, with `commission`: execution, order
    /// update, status and commission report, in the order a gateway sends them. The execution is
    /// remembered (and replayed on request) even while no client is connected: that is a fill
    /// during an outage.
    pub fn fill(&self, order_id: i32, exec_id: &str, shares: &str, price: f64, commission: f64) {
        let frames = {
            let mut s = self.shared.lock();
            let Some(order) = s.orders.get_mut(&order_id) else { return };
            order.filled += shares.parse::<f64>().unwrap_or(0.0);
            let total = order.placed.quantity.parse::<f64>().unwrap_or(0.0);
            order.status = if order.filled >= total { "Filled" } else { "Submitted" }.into();
            let order = order.clone();
            let exec = ExecRecord { order_id, exec_id: exec_id.into(), shares: shares.into(), price, commission };
            s.executions.push(exec.clone());
            let cum = cum_of(&s.executions, order_id);
            vec![
                frame(resp::EXECUTION_DATA, &execution_details(-1, &order, &exec, &cum)),
                frame(resp::OPEN_ORDER, &open_order(&order)),
                frame(resp::ORDER_STATUS, &order_status(&order, Some(price))),
                frame(resp::COMMISSION_REPORT, &commission_report(&exec)),
            ]
        };
        for f in frames {
            if let Some((_, tx)) = &self.shared.lock().conn {
                let _ = tx.send(Out::Frame(f));
            }
        }
    }
}

impl FakeGateway {
    /// IB cancels order `order_id` on its own (a day order expiring, a venue rejection after
    /// acceptance): the status goes to `Cancelled`, sent to the client when one is connected.
    pub fn cancel_at_gateway(&self, order_id: i32) {
        let frame = {
            let mut s = self.shared.lock();
            let Some(o) = s.orders.get_mut(&order_id) else { return };
            o.status = "Cancelled".into();
            frame(resp::ORDER_STATUS, &order_status(&o.clone(), None))
        };
        if let Some((_, tx)) = &self.shared.lock().conn {
            let _ = tx.send(Out::Frame(frame));
        }
    }
}

fn cum_of(executions: &[ExecRecord], order_id: i32) -> String {
    let cum: f64 = executions.iter().filter(|e| e.order_id == order_id).map(|e| e.shares.parse().unwrap_or(0.0)).sum();
    cum.to_string()
}

fn length_prefixed(body: &[u8]) -> Vec<u8> {
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
    let mut out = len.to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

fn frame(id: i32, msg: &impl Message) -> Vec<u8> {
    let mut body = (id + PROTO_OFFSET).to_be_bytes().to_vec();
    body.extend_from_slice(&msg.encode_to_vec());
    length_prefixed(&body)
}

fn error(id: i32, code: i32, message: &str) -> proto::ErrorMessage {
    proto::ErrorMessage { id: Some(id), error_time: Some(0), error_code: Some(code), error_msg: Some(message.into()) }
}

fn contract(symbol: &str) -> proto::Contract {
    proto::Contract {
        con_id: Some(1000),
        symbol: Some(symbol.into()),
        sec_type: Some("STK".into()),
        exchange: Some("SMART".into()),
        currency: Some("USD".into()),
    }
}

fn open_order(o: &OrderRecord) -> proto::OpenOrder {
    let p = &o.placed;
    proto::OpenOrder {
        order_id: Some(p.order_id),
        contract: Some(contract(&p.symbol)),
        order: Some(proto::Order {
            client_id: Some(o.client_id),
            order_id: Some(p.order_id),
            perm_id: Some(i64::from(p.order_id) + 1_000_000),
            action: Some(p.action.clone()),
            total_quantity: Some(p.quantity.clone()),
            order_type: Some(p.order_type.clone()),
            lmt_price: p.limit_price,
            tif: Some(p.tif.clone()),
            account: Some(p.account.clone()),
            order_ref: Some(p.order_ref.clone()),
        }),
        order_state: Some(proto::OrderState { status: Some(o.status.clone()) }),
    }
}

fn order_status(o: &OrderRecord, last_fill: Option<f64>) -> proto::OrderStatus {
    let total = o.placed.quantity.parse::<f64>().unwrap_or(0.0);
    let remaining = if o.status == "Cancelled" { 0.0 } else { (total - o.filled).max(0.0) };
    proto::OrderStatus {
        order_id: Some(o.placed.order_id),
        status: Some(o.status.clone()),
        filled: Some(o.filled.to_string()),
        remaining: Some(remaining.to_string()),
        avg_fill_price: last_fill,
        perm_id: Some(i64::from(o.placed.order_id) + 1_000_000),
        last_fill_price: last_fill,
        client_id: Some(o.client_id),
    }
}

fn execution_details(req_id: i32, o: &OrderRecord, e: &ExecRecord, cum: &str) -> proto::ExecutionDetails {
    let side = if o.placed.action == "BUY" { "BOT" } else { "SLD" };
    proto::ExecutionDetails {
        req_id: Some(req_id),
        contract: Some(contract(&o.placed.symbol)),
        execution: Some(proto::Execution {
            order_id: Some(o.placed.order_id),
            exec_id: Some(e.exec_id.clone()),
            time: Some("20260102 09:30:01".into()),
            acct_number: Some(o.placed.account.clone()),
            exchange: Some("NYSE".into()),
            side: Some(side.into()),
            shares: Some(e.shares.clone()),
            price: Some(e.price),
            perm_id: Some(i64::from(o.placed.order_id) + 1_000_000),
            client_id: Some(o.client_id),
            cum_qty: Some(cum.into()),
            avg_price: Some(e.price),
            order_ref: Some(o.placed.order_ref.clone()),
        }),
    }
}

fn commission_report(e: &ExecRecord) -> proto::CommissionReport {
    proto::CommissionReport {
        exec_id: Some(e.exec_id.clone()),
        commission: Some(e.commission),
        currency: Some("USD".into()),
    }
}

/// Reads one length-prefixed frame; `None` when the connection ended or the frame is impossible.
async fn read_frame(rd: &mut OwnedReadHalf) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    rd.read_exact(&mut len).await.ok()?;
    let len = usize::try_from(u32::from_be_bytes(len)).ok()?;
    if len > MAX_FRAME {
        return None;
    }
    let mut body = vec![0u8; len];
    rd.read_exact(&mut body).await.ok()?;
    Some(body)
}

async fn serve(shared: Arc<Shared>, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let mut magic = [0u8; 4];
    if rd.read_exact(&mut magic).await.is_err() || &magic != b"API\0" {
        return;
    }
    // The client's version range; the fake answers with one version inside every 5.x range.
    if read_frame(&mut rd).await.is_none() {
        return;
    }
    let hello = format!("{SERVER_VERSION}\0{}\0", "20260102 09:30:00 EST");
    if wr.write_all(&length_prefixed(hello.as_bytes())).await.is_err() {
        return;
    }
    let (tx, mut rx) = mpsc::unbounded_channel::<Out>();
    let writer = tokio::spawn(async move {
        while let Some(out) = rx.recv().await {
            match out {
                Out::Frame(f) => {
                    if wr.write_all(&f).await.is_err() {
                        break;
                    }
                }
                Out::Close => break,
            }
        }
        let _ = wr.shutdown().await;
    });
    let conn_id = {
        let mut s = shared.lock();
        s.conn_seq += 1;
        let id = s.conn_seq;
        s.conn = Some((id, tx.clone()));
        id
    };
    while let Some(body) = read_frame(&mut rd).await {
        let still_current = shared.lock().conn.as_ref().is_some_and(|(id, _)| *id == conn_id);
        if !still_current {
            break;
        }
        handle(&shared, &tx, &body);
        shared.changed.notify_waiters();
    }
    {
        let mut s = shared.lock();
        if s.conn.as_ref().is_some_and(|(id, _)| *id == conn_id) {
            s.conn = None;
        }
    }
    let _ = tx.send(Out::Close);
    let _ = writer.await;
    shared.changed.notify_waiters();
}

fn decode<M: Message + Default>(s: &mut State, payload: &[u8]) -> Option<M> {
    let decoded = M::decode(payload).ok();
    s.malformed += u64::from(decoded.is_none());
    decoded
}

fn handle(shared: &Shared, tx: &mpsc::UnboundedSender<Out>, body: &[u8]) {
    let Some((id, payload)) = body.split_first_chunk::<4>() else {
        shared.lock().malformed += 1;
        return;
    };
    let id = i32::from_be_bytes(*id);
    if id <= PROTO_OFFSET {
        // ibapi 5.x sends only protobuf requests; a text frame is not something the fake knows.
        let mut s = shared.lock();
        s.requests.push(Request::Other(id));
        return;
    }
    let id = id - PROTO_OFFSET;
    let send = |f: Vec<u8>| {
        let _ = tx.send(Out::Frame(f));
    };
    let mut s = shared.lock();
    match id {
        req::START_API => {
            let Some(m) = decode::<proto::StartApiRequest>(&mut s, payload) else { return };
            let client_id = m.client_id.unwrap_or(0);
            s.requests.push(Request::StartApi { client_id });
            if s.client_id_in_use {
                let msg = error(-1, 326, "Unable to connect as the client id is already in use.");
                let _ = tx.send(Out::Frame(frame(resp::ERROR, &msg)));
                let _ = tx.send(Out::Close);
                return;
            }
            s.client_id = client_id;
            s.connections += 1;
            let next = proto::NextValidId { order_id: Some(s.next_order_id) };
            let accounts = proto::ManagedAccounts { accounts_list: Some(s.accounts.clone()) };
            send(frame(resp::NEXT_VALID_ID, &next));
            send(frame(resp::MANAGED_ACCOUNTS, &accounts));
            // A real gateway follows with farm notices; clients must take them in stride.
            send(frame(resp::ERROR, &error(-1, 2104, "Market data farm connection is OK:usfarm")));
        }
        req::TICK_BY_TICK => {
            let Some(m) = decode::<proto::TickByTickRequest>(&mut s, payload) else { return };
            let req_id = m.req_id.unwrap_or(0);
            let symbol = m.contract.and_then(|c| c.symbol).unwrap_or_default();
            s.requests.push(Request::TickByTick {
                req_id,
                symbol: symbol.clone(),
                tick_type: m.tick_type.unwrap_or_default(),
            });
            if let Some((code, message)) = s.reject_next.remove(&symbol) {
                send(frame(resp::ERROR, &error(req_id, code, &message)));
            }
        }
        req::MARKET_DEPTH => {
            let Some(m) = decode::<proto::MarketDepthRequest>(&mut s, payload) else { return };
            let req_id = m.req_id.unwrap_or(0);
            let symbol = m.contract.and_then(|c| c.symbol).unwrap_or_default();
            s.requests.push(Request::MarketDepth { req_id, symbol: symbol.clone(), rows: m.num_rows.unwrap_or(0) });
            if let Some((code, message)) = s.reject_next.remove(&symbol) {
                send(frame(resp::ERROR, &error(req_id, code, &message)));
            }
        }
        req::CANCEL_TICK_BY_TICK | req::CANCEL_MARKET_DEPTH => {
            let Some(m) = decode::<proto::ById>(&mut s, payload) else { return };
            let req_id = m.id.unwrap_or(0);
            s.requests.push(if id == req::CANCEL_TICK_BY_TICK {
                Request::CancelTickByTick { req_id }
            } else {
                Request::CancelMarketDepth { req_id }
            });
        }
        req::PLACE_ORDER => {
            let Some(m) = decode::<proto::PlaceOrderRequest>(&mut s, payload) else { return };
            let order = m.order.unwrap_or_default();
            let placed = PlacedOrder {
                order_id: m.order_id.unwrap_or(0),
                symbol: m.contract.and_then(|c| c.symbol).unwrap_or_default(),
                action: order.action.unwrap_or_default(),
                quantity: order.total_quantity.unwrap_or_default(),
                order_type: order.order_type.unwrap_or_default(),
                limit_price: order.lmt_price,
                tif: order.tif.unwrap_or_default(),
                account: order.account.unwrap_or_default(),
                order_ref: order.order_ref.unwrap_or_default(),
            };
            s.requests.push(Request::PlaceOrder(placed.clone()));
            s.next_order_id = s.next_order_id.max(placed.order_id + 1);
            let record = OrderRecord { placed, status: "Submitted".into(), filled: 0.0, client_id: s.client_id };
            s.orders.insert(record.placed.order_id, record.clone());
            send(frame(resp::OPEN_ORDER, &open_order(&record)));
            send(frame(resp::ORDER_STATUS, &order_status(&record, None)));
        }
        req::CANCEL_ORDER => {
            let Some(m) = decode::<proto::ById>(&mut s, payload) else { return };
            let order_id = m.id.unwrap_or(0);
            s.requests.push(Request::CancelOrder { order_id });
            match s.orders.get_mut(&order_id) {
                Some(o) if o.status != "Filled" && o.status != "Cancelled" => {
                    o.status = "Cancelled".into();
                    let o = o.clone();
                    send(frame(resp::ERROR, &error(order_id, 202, "Order Canceled - reason:")));
                    send(frame(resp::ORDER_STATUS, &order_status(&o, None)));
                }
                _ => send(frame(
                    resp::ERROR,
                    &error(order_id, 10148, "OrderId that needs to be cancelled cannot be cancelled"),
                )),
            }
        }
        req::OPEN_ORDERS => {
            s.requests.push(Request::OpenOrders);
            for o in s.orders.values().filter(|o| o.status != "Filled" && o.status != "Cancelled") {
                send(frame(resp::OPEN_ORDER, &open_order(o)));
                send(frame(resp::ORDER_STATUS, &order_status(o, None)));
            }
            send(frame(resp::OPEN_ORDER_END, &proto::Empty {}));
        }
        req::EXECUTIONS => {
            let Some(m) = decode::<proto::ById>(&mut s, payload) else { return };
            let req_id = m.id.unwrap_or(0);
            s.requests.push(Request::Executions { req_id });
            let mut cum: BTreeMap<i32, f64> = BTreeMap::new();
            for e in &s.executions {
                let Some(o) = s.orders.get(&e.order_id) else { continue };
                let c = cum.entry(e.order_id).or_default();
                *c += e.shares.parse::<f64>().unwrap_or(0.0);
                let details = execution_details(req_id, o, e, &c.to_string());
                send(frame(resp::EXECUTION_DATA, &details));
                send(frame(resp::COMMISSION_REPORT, &commission_report(e)));
            }
            send(frame(resp::EXECUTION_DATA_END, &proto::ById { id: Some(req_id) }));
        }
        other => s.requests.push(Request::Other(other)),
    }
}
