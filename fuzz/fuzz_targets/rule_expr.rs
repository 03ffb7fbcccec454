//! Rule expressions as a configuration file gives them: any text is compiled and checked
//! (size, nesting, variables, functions, a trial run) or refused with a message; it never
//! panics or overflows the stack, and an accepted rule evaluates to pass, false or a
//! failure (which denies) without panicking — and the same verdict whether its fast form
//! (the shapes evaluated without the interpreter) or the interpreter judges it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sessiongate::policy::rules::{Expr, RouteRule, RouteRules};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(expr) = Expr::parse(text) {
        let rules = RouteRules::new(vec![RouteRule::new("r", expr, None, 403)]);
        let (judged, interpreted) = rules.judge_sample_both();
        assert_eq!(judged, interpreted, "{text}");
    }
});
