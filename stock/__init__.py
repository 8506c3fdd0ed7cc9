"""Stock: ingredients, recipes, batches, levels, the movement ledger, reservations and receipts."""
