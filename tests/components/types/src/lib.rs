//! Test component `fjord:types@1.0.0`: every `echo-*` function returns its argument.

wit_bindgen::generate!({ world: "types", path: "wit" });

use exports::fjord::types::echo::{Color, Guest, Perms, ServerInfo, Shape};

struct Types;

impl Guest for Types {
    fn echo_bool(v: bool) -> bool {
        v
    }
    fn echo_s8(v: i8) -> i8 {
        v
    }
    fn echo_u8(v: u8) -> u8 {
        v
    }
    fn echo_s16(v: i16) -> i16 {
        v
    }
    fn echo_u16(v: u16) -> u16 {
        v
    }
    fn echo_s32(v: i32) -> i32 {
        v
    }
    fn echo_u32(v: u32) -> u32 {
        v
    }
    fn echo_s64(v: i64) -> i64 {
        v
    }
    fn echo_u64(v: u64) -> u64 {
        v
    }
    fn echo_f32(v: f32) -> f32 {
        v
    }
    fn echo_f64(v: f64) -> f64 {
        v
    }
    fn echo_char(v: char) -> char {
        v
    }
    fn echo_string(v: String) -> String {
        v
    }
    fn echo_list(v: Vec<u32>) -> Vec<u32> {
        v
    }
    fn echo_nested(v: Vec<Vec<String>>) -> Vec<Vec<String>> {
        v
    }
    fn echo_tuple(v: (String, u32)) -> (String, u32) {
        v
    }
    fn echo_record(v: ServerInfo) -> ServerInfo {
        v
    }
    fn echo_option(v: Option<String>) -> Option<String> {
        v
    }
    fn echo_enum(v: Color) -> Color {
        v
    }
    fn echo_variant(v: Shape) -> Shape {
        v
    }
    fn echo_flags(v: Perms) -> Perms {
        v
    }
    fn echo_result(v: Result<String, u32>) -> Result<String, u32> {
        v
    }

    fn many_args(first_name: String, last_name: String, age: Option<u8>) -> String {
        match age {
            Some(age) => format!("{first_name} {last_name} ({age})"),
            None => format!("{first_name} {last_name}"),
        }
    }

    fn nothing() {}
}

export!(Types);
