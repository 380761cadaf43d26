//! Test component `fjord:stateful@1.0.0`: oslo's stateful test endpoint and raw bucket access.

wit_bindgen::generate!({ world: "stateful-endpoint", path: "wit" });

use exports::fjord::stateful::stateful::{Guest, StateError};
use fjord_guest::keyvalue::{self, Bucket};

struct Stateful;

fn store(e: keyvalue::Error) -> StateError {
    StateError::Store(e.to_string())
}

fn open(name: &str) -> Result<Bucket, StateError> {
    keyvalue::open(name).map_err(store)
}

fn ival(bucket: &Bucket) -> Result<i64, StateError> {
    match bucket.get_string("ival").map_err(store)? {
        None => Ok(0),
        Some(text) => text
            .parse()
            .map_err(|_| StateError::Store(format!("ival is not an integer: {text:?}"))),
    }
}

fn set_ival(bucket: &Bucket, value: i64) -> Result<i64, StateError> {
    bucket.set("ival", value.to_string()).map_err(store)?;
    Ok(value)
}

impl Guest for Stateful {
    fn add(increment: i64) -> Result<i64, StateError> {
        let bucket = open("default")?;
        let sum = ival(&bucket)?
            .checked_add(increment)
            .ok_or_else(|| StateError::ValueError("ival overflows".into()))?;
        set_ival(&bucket, sum)
    }

    fn subtract(increment: i64) -> Result<i64, StateError> {
        let bucket = open("default")?;
        let current = ival(&bucket)?;
        if current < increment {
            return Err(StateError::ValueError("ival can't go negative!".into()));
        }
        set_ival(&bucket, current - increment)
    }

    fn append(text: String) -> Result<String, StateError> {
        let bucket = open("default")?;
        let sval = bucket
            .get_string("sval")
            .map_err(store)?
            .unwrap_or_default()
            + &text;
        bucket.set("sval", &sval).map_err(store)?;
        Ok(sval)
    }

    fn ival() -> Result<i64, StateError> {
        ival(&open("default")?)
    }

    fn sval() -> Result<String, StateError> {
        Ok(open("default")?
            .get_string("sval")
            .map_err(store)?
            .unwrap_or_default())
    }

    fn put(bucket: String, key: String, size: u32) -> Result<(), StateError> {
        let value = vec![b'x'; size as usize];
        open(&bucket)?.set(&key, value).map_err(store)
    }

    fn fetch(bucket: String, key: String) -> Result<Option<u32>, StateError> {
        let value = open(&bucket)?.get(&key).map_err(store)?;
        Ok(value.map(|v| v.len() as u32))
    }

    fn remove(bucket: String, key: String) -> Result<(), StateError> {
        open(&bucket)?.delete(&key).map_err(store)
    }

    fn present(bucket: String, key: String) -> Result<bool, StateError> {
        open(&bucket)?.exists(&key).map_err(store)
    }

    fn bump(bucket: String, key: String, delta: u64) -> Result<u64, StateError> {
        open(&bucket)?.increment(&key, delta).map_err(store)
    }

    fn put_many(bucket: String, keys: Vec<String>) -> Result<(), StateError> {
        let pairs: Vec<(&str, &[u8])> = keys.iter().map(|k| (k.as_str(), k.as_bytes())).collect();
        open(&bucket)?.set_many(&pairs).map_err(store)
    }

    fn fetch_many(bucket: String, keys: Vec<String>) -> Result<Vec<Option<String>>, StateError> {
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let values = open(&bucket)?.get_many(&keys).map_err(store)?;
        Ok(values
            .into_iter()
            .map(|v| v.map(|b| String::from_utf8_lossy(&b).into_owned()))
            .collect())
    }

    fn remove_many(bucket: String, keys: Vec<String>) -> Result<(), StateError> {
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        open(&bucket)?.delete_many(&keys).map_err(store)
    }

    fn keys(bucket: String) -> Result<Vec<String>, StateError> {
        let mut keys = open(&bucket)?.keys().map_err(store)?;
        keys.sort();
        Ok(keys)
    }

    fn hoard(bucket: String, times: u32) -> Result<u32, StateError> {
        let mut held = Vec::new();
        for _ in 0..times {
            held.push(open(&bucket)?);
        }
        Ok(held.len() as u32)
    }
}

export!(Stateful);
