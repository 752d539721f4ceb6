"""Example configurations; demo.yaml is the demo world and ships with the package."""
