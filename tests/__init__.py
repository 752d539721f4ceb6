"""opsbot's tests, one package per package of the product (tests.simcluster tests the top-level
simcluster package: without this file pytest would import it under that very name)."""
