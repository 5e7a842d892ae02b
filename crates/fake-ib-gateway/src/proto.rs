//! The protobuf messages the fake speaks, with only the fields (and tags) it uses. Tags follow
//! ibapi 5.5.0's generated `protobuf.rs`; the client skips fields it does not know.

#![allow(missing_docs)]

use prost::Message;

#[derive(Clone, PartialEq, Message)]
pub struct Contract {
    #[prost(int32, optional, tag = "1")]
    pub con_id: Option<i32>,
    #[prost(string, optional, tag = "2")]
    pub symbol: Option<String>,
    #[prost(string, optional, tag = "3")]
    pub sec_type: Option<String>,
    #[prost(string, optional, tag = "8")]
    pub exchange: Option<String>,
    #[prost(string, optional, tag = "10")]
    pub currency: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Order {
    #[prost(int32, optional, tag = "1")]
    pub client_id: Option<i32>,
    #[prost(int32, optional, tag = "2")]
    pub order_id: Option<i32>,
    #[prost(int64, optional, tag = "3")]
    pub perm_id: Option<i64>,
    #[prost(string, optional, tag = "5")]
    pub action: Option<String>,
    #[prost(string, optional, tag = "6")]
    pub total_quantity: Option<String>,
    #[prost(string, optional, tag = "8")]
    pub order_type: Option<String>,
    #[prost(double, optional, tag = "9")]
    pub lmt_price: Option<f64>,
    #[prost(string, optional, tag = "11")]
    pub tif: Option<String>,
    #[prost(string, optional, tag = "12")]
    pub account: Option<String>,
    // Not 14 (clearing_account): ibapi 5.5.0 puts orderRef at tag 28.
    #[prost(string, optional, tag = "28")]
    pub order_ref: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
pub struct OrderState {
    #[prost(string, optional, tag = "1")]
    pub status: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
pub struct StartApiRequest {
    #[prost(int32, optional, tag = "1")]
    pub client_id: Option<i32>,
}

#[derive(Clone, PartialEq, Message)]
pub struct NextValidId {
    #[prost(int32, optional, tag = "1")]
    pub order_id: Option<i32>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ManagedAccounts {
    #[prost(string, optional, tag = "1")]
    pub accounts_list: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ErrorMessage {
    #[prost(int32, optional, tag = "1")]
    pub id: Option<i32>,
    #[prost(int64, optional, tag = "2")]
    pub error_time: Option<i64>,
    #[prost(int32, optional, tag = "3")]
    pub error_code: Option<i32>,
    #[prost(string, optional, tag = "4")]
    pub error_msg: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TickByTickRequest {
    #[prost(int32, optional, tag = "1")]
    pub req_id: Option<i32>,
    #[prost(message, optional, tag = "2")]
    pub contract: Option<Contract>,
    #[prost(string, optional, tag = "3")]
    pub tick_type: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
pub struct MarketDepthRequest {
    #[prost(int32, optional, tag = "1")]
    pub req_id: Option<i32>,
    #[prost(message, optional, tag = "2")]
    pub contract: Option<Contract>,
    #[prost(int32, optional, tag = "3")]
    pub num_rows: Option<i32>,
}

/// Any request whose only field the fake reads is `req_id = 1` (cancels, executions).
#[derive(Clone, PartialEq, Message)]
pub struct ById {
    #[prost(int32, optional, tag = "1")]
    pub id: Option<i32>,
}

#[derive(Clone, PartialEq, Message)]
pub struct HistoricalTickLast {
    #[prost(int64, optional, tag = "1")]
    pub time: Option<i64>,
    #[prost(double, optional, tag = "3")]
    pub price: Option<f64>,
    #[prost(string, optional, tag = "4")]
    pub size: Option<String>,
    #[prost(string, optional, tag = "5")]
    pub exchange: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
pub struct HistoricalTickBidAsk {
    #[prost(int64, optional, tag = "1")]
    pub time: Option<i64>,
    #[prost(double, optional, tag = "3")]
    pub price_bid: Option<f64>,
    #[prost(double, optional, tag = "4")]
    pub price_ask: Option<f64>,
    #[prost(string, optional, tag = "5")]
    pub size_bid: Option<String>,
    #[prost(string, optional, tag = "6")]
    pub size_ask: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TickByTickData {
    #[prost(int32, optional, tag = "1")]
    pub req_id: Option<i32>,
    #[prost(int32, optional, tag = "2")]
    pub tick_type: Option<i32>,
    #[prost(message, optional, tag = "3")]
    pub last: Option<HistoricalTickLast>,
    #[prost(message, optional, tag = "4")]
    pub bid_ask: Option<HistoricalTickBidAsk>,
}

#[derive(Clone, PartialEq, Message)]
pub struct MarketDepthData {
    #[prost(int32, optional, tag = "1")]
    pub position: Option<i32>,
    #[prost(int32, optional, tag = "2")]
    pub operation: Option<i32>,
    #[prost(int32, optional, tag = "3")]
    pub side: Option<i32>,
    #[prost(double, optional, tag = "4")]
    pub price: Option<f64>,
    #[prost(string, optional, tag = "5")]
    pub size: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
pub struct MarketDepth {
    #[prost(int32, optional, tag = "1")]
    pub req_id: Option<i32>,
    #[prost(message, optional, tag = "2")]
    pub data: Option<MarketDepthData>,
}

#[derive(Clone, PartialEq, Message)]
pub struct PlaceOrderRequest {
    #[prost(int32, optional, tag = "1")]
    pub order_id: Option<i32>,
    #[prost(message, optional, tag = "2")]
    pub contract: Option<Contract>,
    #[prost(message, optional, tag = "3")]
    pub order: Option<Order>,
}

#[derive(Clone, PartialEq, Message)]
pub struct OpenOrder {
    #[prost(int32, optional, tag = "1")]
    pub order_id: Option<i32>,
    #[prost(message, optional, tag = "2")]
    pub contract: Option<Contract>,
    #[prost(message, optional, tag = "3")]
    pub order: Option<Order>,
    #[prost(message, optional, tag = "4")]
    pub order_state: Option<OrderState>,
}

#[derive(Clone, PartialEq, Message)]
pub struct OrderStatus {
    #[prost(int32, optional, tag = "1")]
    pub order_id: Option<i32>,
    #[prost(string, optional, tag = "2")]
    pub status: Option<String>,
    #[prost(string, optional, tag = "3")]
    pub filled: Option<String>,
    #[prost(string, optional, tag = "4")]
    pub remaining: Option<String>,
    #[prost(double, optional, tag = "5")]
    pub avg_fill_price: Option<f64>,
    #[prost(int64, optional, tag = "6")]
    pub perm_id: Option<i64>,
    #[prost(double, optional, tag = "8")]
    pub last_fill_price: Option<f64>,
    #[prost(int32, optional, tag = "9")]
    pub client_id: Option<i32>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Execution {
    #[prost(int32, optional, tag = "1")]
    pub order_id: Option<i32>,
    #[prost(string, optional, tag = "2")]
    pub exec_id: Option<String>,
    #[prost(string, optional, tag = "3")]
    pub time: Option<String>,
    #[prost(string, optional, tag = "4")]
    pub acct_number: Option<String>,
    #[prost(string, optional, tag = "5")]
    pub exchange: Option<String>,
    #[prost(string, optional, tag = "6")]
    pub side: Option<String>,
    #[prost(string, optional, tag = "7")]
    pub shares: Option<String>,
    #[prost(double, optional, tag = "8")]
    pub price: Option<f64>,
    #[prost(int64, optional, tag = "9")]
    pub perm_id: Option<i64>,
    #[prost(int32, optional, tag = "10")]
    pub client_id: Option<i32>,
    #[prost(string, optional, tag = "12")]
    pub cum_qty: Option<String>,
    #[prost(double, optional, tag = "13")]
    pub avg_price: Option<f64>,
    #[prost(string, optional, tag = "14")]
    pub order_ref: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ExecutionDetails {
    #[prost(int32, optional, tag = "1")]
    pub req_id: Option<i32>,
    #[prost(message, optional, tag = "2")]
    pub contract: Option<Contract>,
    #[prost(message, optional, tag = "3")]
    pub execution: Option<Execution>,
}

#[derive(Clone, PartialEq, Message)]
pub struct CommissionReport {
    #[prost(string, optional, tag = "1")]
    pub exec_id: Option<String>,
    #[prost(double, optional, tag = "2")]
    pub commission: Option<f64>,
    #[prost(string, optional, tag = "3")]
    pub currency: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Empty {}
