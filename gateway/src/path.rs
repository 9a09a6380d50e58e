//! Where the gateway's commands go, and how their answers come back.
//!
//! - [`OrderPath::Backbone`]: every command is encoded and produced to `tachyon.orders`
//!   (Kafka, or any backbone); its durable acknowledgement answers `?response=ack`, and
//!   the engine's report arrives later through the executions feed, matched to the
//!   waiting request by its `request_id`.
//! - [`OrderPath::InProcess`]: the engine runs in this process behind a sequenced
//!   pipeline ([`InProcessPath`]): the command travels as a value with its [`Waiter`],
//!   and the pipeline answers the waiter itself once the command's batch is durable and
//!   applied, after the order store and market data have taken its outputs.

use std::sync::Arc;

use tachyon_bus::{Backbone, BusError};
use tachyon_proto::balance::TransferRecord;
use tachyon_proto::wire::{CommandEnvelope, ShardOutput, TransferEnvelope};
use tachyon_proto::{Event, OrderId, RejectReason};
use tokio::sync::oneshot;

/// The engine's answer to one command, as a waiting request needs it (the order itself
/// is read from the order store, which has it by then).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reply {
    /// Why the engine refused the command, if it did.
    pub rejected: Option<RejectReason>,
    /// The orders a cancel-all cancelled.
    pub cancelled: Vec<OrderId>,
    /// A deposit's or withdrawal's result (balances on).
    pub transfer: Option<TransferRecord>,
}

impl Reply {
    /// The answer an executions record carries.
    pub fn of(output: &ShardOutput) -> Self {
        let mut reply = Self::default();
        for event in &output.events {
            match event {
                Event::Rejected(r) if reply.rejected.is_none() => reply.rejected = Some(r.reason),
                Event::Cancelled(c) => reply.cancelled.push(c.order_id),
                _ => {}
            }
        }
        reply.transfer = output.transfer;
        reply
    }
}

/// What a submitted command's request waits on.
#[derive(Debug)]
pub enum Waiter {
    /// `?response=ack`: answered once the command is durable, or with the reason the
    /// risk stage refused it (balances on: it decides before the command is acknowledged).
    Ack(oneshot::Sender<Result<Option<RejectReason>, BusError>>),
    /// `?response=result`: answered with the engine's report.
    Reply(oneshot::Sender<Result<Reply, BusError>>),
}

impl Waiter {
    /// Answers with an error (the command will not be processed).
    pub fn fail(self, error: BusError) {
        match self {
            Waiter::Ack(tx) => drop(tx.send(Err(error))),
            Waiter::Reply(tx) => drop(tx.send(Err(error))),
        }
    }
}

/// An engine in this process that takes commands with their waiters.
pub trait InProcessPath: Send + Sync + 'static {
    fn partitions(&self) -> u32;

    /// `false` while a partition cannot take commands (failed).
    fn is_healthy(&self) -> bool;

    /// Queues `envelope` on `partition`; the waiter is answered by the engine.
    ///
    /// # Errors
    /// [`BusError::Full`] when the partition's queue is full, [`BusError::Unavailable`]
    /// when it failed or stops; the waiter is dropped unanswered.
    fn submit(&self, partition: u32, envelope: CommandEnvelope, waiter: Waiter) -> Result<(), BusError>;

    /// Queues a deposit or withdrawal (balances on); its waiter is answered with the
    /// transfer's result.
    ///
    /// # Errors
    /// As [`InProcessPath::submit`]; [`BusError::Unavailable`] when balances are off.
    fn submit_transfer(&self, transfer: TransferEnvelope, waiter: Waiter) -> Result<(), BusError> {
        drop((transfer, waiter));
        Err(BusError::Unavailable("balances are off".into()))
    }
}

/// Where the gateway's commands go (see the module docs).
#[derive(Clone)]
pub enum OrderPath {
    Backbone(Arc<dyn Backbone>),
    InProcess(Arc<dyn InProcessPath>),
}

impl std::fmt::Debug for OrderPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OrderPath::Backbone(_) => "OrderPath::Backbone",
            OrderPath::InProcess(_) => "OrderPath::InProcess",
        })
    }
}

impl OrderPath {
    pub fn partitions(&self) -> u32 {
        match self {
            OrderPath::Backbone(bus) => bus.partitions(),
            OrderPath::InProcess(path) => path.partitions(),
        }
    }

    pub fn is_healthy(&self) -> bool {
        match self {
            OrderPath::Backbone(bus) => bus.is_healthy(),
            OrderPath::InProcess(path) => path.is_healthy(),
        }
    }
}
