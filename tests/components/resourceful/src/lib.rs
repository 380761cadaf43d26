//! Test component `fjord:resourceful@1.0.0`: a resource in the exported interface; the host refuses it.

use std::cell::Cell;

wit_bindgen::generate!({ world: "resourceful", path: "wit" });

use exports::fjord::resourceful::counters::{CounterBorrow, Guest, GuestCounter};

struct Resourceful;

struct Counter(Cell<u32>);

impl GuestCounter for Counter {
    fn new() -> Self {
        Counter(Cell::new(0))
    }

    fn bump(&self) -> u32 {
        self.0.set(self.0.get() + 1);
        self.0.get()
    }
}

impl Guest for Resourceful {
    type Counter = Counter;

    fn use_counter(c: CounterBorrow<'_>) -> u32 {
        c.get::<Counter>().bump()
    }
}

export!(Resourceful);
