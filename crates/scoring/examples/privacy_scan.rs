//! Prints the privacy report of each line of standard input (or of each
//! argument): the score and every entity with its label and text. A tool for
//! looking at what the scanner sees.
//!
//! Run: `echo "My name is Budi Santoso" | cargo run --release -p scoring --example privacy_scan`

use std::io::BufRead;

use api::Role;
use scoring::Turn;
use scoring::privacy::PrivacyScanner;

fn main() {
    let scanner = PrivacyScanner::new();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let lines: Vec<String> = if args.is_empty() {
        std::io::stdin().lock().lines().map_while(Result::ok).collect()
    } else {
        args
    };
    for line in lines {
        // `\n` in a line stands for a line break.
        let text = line.replace("\\n", "\n");
        let r = scanner.scan(&[Turn {
            role: Role::User,
            text: &text,
        }]);
        println!("{:.2}  {}", r.score, line);
        for e in &r.entities {
            let value = text.get(e.byte_start..e.byte_end).unwrap_or("");
            println!("      {:<15} [{}..{}] {:?}", e.label.as_str(), e.start, e.end, value);
        }
    }
}
