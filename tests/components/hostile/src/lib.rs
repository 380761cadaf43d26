//! Test component `fjord:hostile@1.0.0`: misbehaves in every way a guest can (see wit/hostile.wit).

wit_bindgen::generate!({ world: "hostile-endpoint", path: "wit" });

use exports::fjord::hostile::hostile::{Cell, Guest, Row};
use std::hint::black_box;

struct Hostile;

impl Guest for Hostile {
    fn ok() -> String {
        "ok".to_string()
    }

    fn spin() {
        let mut n: u64 = 0;
        loop {
            n = black_box(n.wrapping_add(1));
        }
    }

    fn memory_bomb() {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(black_box(vec![1u8; 1 << 20]));
        }
    }

    #[allow(unconditional_recursion)]
    fn recurse(depth: u64) -> u64 {
        // black_box keeps the recursion from becoming a loop.
        black_box(Self::recurse(black_box(depth + 1))).wrapping_add(1)
    }

    fn panic_with(message: String) {
        panic!("{message}");
    }

    fn read_file(path: String) -> Result<String, String> {
        std::fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))
    }

    fn read_env(name: String) -> Result<String, String> {
        std::env::var(&name).map_err(|e| format!("{name}: {e}"))
    }

    fn big_reply(bytes: u32) -> String {
        "x".repeat(bytes as usize)
    }

    fn big_error(bytes: u32) -> Result<String, String> {
        Err("e".repeat(bytes as usize))
    }

    fn big_bytes(bytes: u32) -> Vec<u8> {
        vec![0; bytes as usize]
    }

    fn big_strings(count: u32, each: u32) -> Vec<String> {
        let one = "s".repeat(each as usize);
        vec![one; count as usize]
    }

    fn big_records(count: u32) -> Vec<Row> {
        (0..count)
            .map(|id| Row {
                id,
                cell: Cell { x: 0, label: None },
                cells: Vec::new(),
            })
            .collect()
    }

    fn log_flood(calls: u32, bytes: u32) {
        let message = "l".repeat(bytes as usize);
        for _ in 0..calls {
            fjord_guest::log::info(&message);
        }
    }

    fn sleep_ms(ms: u32) {
        std::thread::sleep(std::time::Duration::from_millis(u64::from(ms)));
    }

    fn chatter(lines: u32) {
        for i in 0..lines {
            println!("hostile stdout line {i}");
            eprintln!("hostile stderr line {i}");
        }
    }

    fn connect(address: String) -> Result<String, String> {
        std::net::TcpStream::connect(&address)
            .map(|_| format!("connected to {address}"))
            .map_err(|e| format!("cannot connect to {address}: {e}"))
    }
}

export!(Hostile);
