//! `tachyon`: the exchange's single binary.
//!
//! Today it lists the symbol table; the embedded exchange (`tachyon run`), key minting
//! and the distributed roles arrive with their issues and will be added here.

use anyhow::Result;
use clap::{Parser, Subcommand};
use tachyon_proto::api::SymbolInfo;
use tachyon_proto::symbol::default_symbols;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(name = "tachyon", version, about = "Tachyon: a low-latency order-matching engine")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the default symbol table as JSON (the body of `GET /v1/symbols`).
    Symbols,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Symbols => {
            let symbols: Vec<SymbolInfo> = default_symbols().iter().map(SymbolInfo::from).collect();
            let json = serde_json::to_string_pretty(&symbols)?;
            #[allow(clippy::print_stdout, reason = "the command's output")]
            {
                println!("{json}");
            }
        }
    }
    Ok(())
}
