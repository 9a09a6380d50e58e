//! [`Engine::process_batch`]: commands in batches, with the cache misses of later commands
//! overlapped with the work of earlier ones.
//!
//! In a book larger than the CPU caches, each command's cost is dominated by a chain of
//! dependent misses: id index → order → its FIFO and account neighbours for a cancel;
//! price index → level → the level's tail order for a new order that rests; the opposite
//! best level's head order for one that trades. Knowing the commands ahead, the batch
//! walks each chain one link per stage, a few commands in advance, with prefetch hints:
//!
//! | stage | commands ahead | cancel / amend | new order |
//! | --- | --- | --- | --- |
//! | index | 12 | id-index line | id-index line, price-index line of its level |
//! | entry | 6 | the order and its account link | its level; the maker it would hit first |
//! | neighbours | 2 | FIFO and account neighbours | the level's tail order |
//!
//! Prefetches are hints only: state may change between a hint and the command (the order
//! filled, the level emptied), which can waste a hint but never changes a result. Events
//! and state are exactly those of calling [`Engine::process`] on each command (a property
//! test holds it to that).

use std::borrow::Borrow;

use tachyon_proto::{Command, NewOrder};

use crate::arena::{Order, NIL};
use crate::engine::Engine;
use crate::ladder::Ladder;
use crate::EventSink;

/// Below this many resting orders (about 256 KiB of orders) the book stays in cache and
/// prefetching is pure overhead.
const PREFETCH_MIN_ORDERS: usize = 4096;
const INDEX_AHEAD: usize = 12;
const ENTRY_AHEAD: usize = 6;
const NEIGHBOURS_AHEAD: usize = 2;
const RING: usize = 8;

/// What the entry stage found, for the neighbour stage.
#[derive(Clone, Copy, Debug)]
enum Found {
    Nothing,
    /// A resting order's slot (cancel or amend target).
    Order(u32),
    /// The level a new order would join.
    Level(u32),
}

impl Engine {
    /// Applies a batch of commands in order, exactly as [`Engine::process`] one by one
    /// would (same events, same state), prefetching ahead when the book is larger than the
    /// caches (see the module docs). After each command's events the sink's
    /// [`EventSink::end_command`] is called. `C` is anything that holds a command (a
    /// command, or an envelope around one), so a runtime need not copy its batch.
    pub fn process_batch<C: Borrow<Command>>(&mut self, cmds: &[C], out: &mut impl EventSink) {
        if self.orders.live() < PREFETCH_MIN_ORDERS {
            for cmd in cmds {
                self.process(cmd.borrow(), out);
                out.end_command();
            }
            return;
        }
        let mut found = [Found::Nothing; RING];
        for (i, cmd) in cmds.iter().enumerate() {
            if let Some(ahead) = cmds.get(i + INDEX_AHEAD) {
                self.prefetch_index(ahead.borrow());
            }
            let entry = i + ENTRY_AHEAD;
            found[entry % RING] = cmds.get(entry).map_or(Found::Nothing, |c| self.prefetch_entry(c.borrow()));
            self.prefetch_neighbours(found[(i + NEIGHBOURS_AHEAD) % RING]);
            self.process(cmd.borrow(), out);
            out.end_command();
        }
    }

    fn prefetch_index(&self, cmd: &Command) {
        match cmd {
            Command::Cancel(c) => self.order_index.prefetch(c.order_id.0),
            Command::Amend(a) => self.order_index.prefetch(a.order_id.0),
            Command::New(n) => {
                self.order_index.prefetch(n.order_id.0);
                if let (Some(price), Some(book)) = (n.price, self.book_index.get(n.symbol)) {
                    self.books[book as usize].ladder(n.side).prefetch(price);
                }
            }
            Command::CancelAll(_) => {}
        }
    }

    fn prefetch_entry(&self, cmd: &Command) -> Found {
        let target = match cmd {
            Command::Cancel(c) => c.order_id,
            Command::Amend(a) => a.order_id,
            Command::New(n) => return self.prefetch_new(n),
            Command::CancelAll(_) => return Found::Nothing,
        };
        match self.order_index.get(target.0) {
            Some(slot) => {
                self.orders.prefetch(slot);
                Found::Order(slot)
            }
            None => Found::Nothing,
        }
    }

    /// A new order: the maker it would meet first, and the level it would join.
    fn prefetch_new(&self, n: &NewOrder) -> Found {
        let Some(book) = self.book_index.get(n.symbol) else { return Found::Nothing };
        let book = &self.books[book as usize];
        if let Some(best) = book.ladder(n.side.opposite()).best() {
            let l = &self.levels[best];
            if l.head != NIL && n.price.is_none_or(|limit| Ladder::crosses(n.side, limit, l.price)) {
                self.orders.prefetch(l.head);
            }
        }
        match n.price.and_then(|p| book.ladder(n.side).find(p)) {
            Some(level) => {
                self.levels.prefetch(level);
                Found::Level(level)
            }
            None => Found::Nothing,
        }
    }

    fn prefetch_neighbours(&self, found: Found) {
        match found {
            Found::Order(slot) if self.orders.is_live(slot) => {
                let Order { prev, next, .. } = self.orders[slot];
                let link = self.orders.account_link(slot);
                for neighbour in [prev, next, link.prev, link.next] {
                    if neighbour != NIL {
                        self.orders.prefetch(neighbour);
                    }
                }
            }
            Found::Level(level) => {
                let tail = self.levels[level].tail;
                if tail != NIL {
                    self.orders.prefetch(tail);
                }
            }
            Found::Order(_) | Found::Nothing => {}
        }
    }
}
