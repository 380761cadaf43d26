//! WIT names are kebab-case, oslo names are snake_case: methods, parameters, record fields and
//! cases are converted everywhere, so oslo callers never see the kebab form.

/// `select-destinations` → `select_destinations`.
///
/// ```
/// assert_eq!(fjord_oslo::names::to_snake("select-destinations"), "select_destinations");
/// ```
pub fn to_snake(kebab: &str) -> String {
    kebab.replace('-', "_")
}

/// `select_destinations` → `select-destinations`.
///
/// ```
/// assert_eq!(fjord_oslo::names::to_kebab("dark_green"), "dark-green");
/// ```
pub fn to_kebab(snake: &str) -> String {
    snake.replace('_', "-")
}

/// `not-found` → `NotFound`: how an error case becomes an exception class name.
///
/// ```
/// assert_eq!(fjord_oslo::names::to_camel("permission-denied"), "PermissionDenied");
/// ```
pub fn to_camel(kebab: &str) -> String {
    kebab
        .split(['-', '_'])
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_uppercase().chain(chars).collect::<String>(),
                None => String::new(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions() {
        assert_eq!(to_snake("select-destinations"), "select_destinations");
        assert_eq!(to_kebab("select_destinations"), "select-destinations");
        assert_eq!(to_camel("not-found"), "NotFound");
        assert_eq!(to_camel("division-by-zero"), "DivisionByZero");
        assert_eq!(to_camel("x"), "X");
    }
}
