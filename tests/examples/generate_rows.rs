//! Writes a large CSV of rows for the seed model (columns `f0…f{n-1}`), with malformed rows
//! planted at a fixed interval, for batch-scoring runs at scale:
//!
//! ```sh
//! cargo run --release -p maas-tests --example generate_rows -- OUT.csv ROWS [FEATURES] [BAD_EVERY]
//! ```
//!
//! Values are deterministic (a fixed-seed xorshift), two decimals in [-1, 1]. Every `BAD_EVERY`th
//! data row (default 100000) is replaced by a malformed one, cycling through a non-number, a short
//! row and a NaN; their 1-based file lines are written to `OUT.csv.bad-lines`, one per line.

use std::io::Write;

fn usage() -> ! {
    eprintln!("usage: generate_rows OUT.csv ROWS [FEATURES=1000] [BAD_EVERY=100000]");
    std::process::exit(2)
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = args.first().cloned().unwrap_or_else(|| usage());
    let rows: u64 = args
        .get(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| usage());
    let features: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let bad_every: u64 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(100_000);

    let mut file = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&out)?);
    let header: Vec<String> = (0..features).map(|i| format!("f{i}")).collect();
    writeln!(file, "{}", header.join(","))?;
    let mut bad_lines = Vec::new();
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut line = String::with_capacity(features * 6);
    for row in 1..=rows {
        line.clear();
        if bad_every > 0 && row % bad_every == 0 {
            bad_lines.push(row + 1);
            match (row / bad_every) % 3 {
                0 => line.push_str(&format!("oops{}", ",0.5".repeat(features - 1))),
                1 => line.push_str("0.1,0.2,0.3"),
                _ => line.push_str(&format!("NaN{}", ",0.5".repeat(features - 1))),
            }
        } else {
            for i in 0..features {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let v = (state % 201) as i64 - 100;
                if i > 0 {
                    line.push(',');
                }
                if v < 0 {
                    line.push('-');
                }
                let a = v.unsigned_abs();
                line.push(char::from(b'0' + (a / 100) as u8));
                line.push('.');
                line.push(char::from(b'0' + (a / 10 % 10) as u8));
                line.push(char::from(b'0' + (a % 10) as u8));
            }
        }
        file.write_all(line.as_bytes())?;
        file.write_all(b"\n")?;
    }
    file.flush()?;
    let listing: String = bad_lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(format!("{out}.bad-lines"), listing)?;
    eprintln!(
        "{rows} rows ({} malformed) written to {out}",
        bad_lines.len()
    );
    Ok(())
}
