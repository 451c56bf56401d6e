"""Generated from protos/humanline/v1 by `make proto`. Do not edit."""
