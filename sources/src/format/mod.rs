//! Record formats, independent of the transport that carries them.
//!
//! * [`parse_line`] reads one NDJSON line — a Finnhub WebSocket message or a flat JSON
//!   trade (SPEC 2) — into [`Item`]s: valid trades, rejects with their reason and raw
//!   payload, keep-alives and server errors. It borrows from the line and, for a typical
//!   line, allocates nothing.
//! * [`write_flat_trade`] and [`write_finnhub_message`] write the same encodings back, with
//!   exact decimals, so that `parse_line` of a written line gives the trade back.
//!
//! The JSON underneath is strict RFC 8259 (`json`): no `NaN`, no duplicate keys, no lone
//! surrogates, no invalid UTF-8, nesting capped at 128.

mod json;
mod trades;
mod write;

pub use trades::{Item, RawReject, RawTrade, parse_line};
pub use write::{write_finnhub_message, write_flat_trade};

#[cfg(test)]
mod tests;
