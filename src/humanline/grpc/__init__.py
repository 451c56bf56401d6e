"""The gRPC boundary: servicers, converters, error mapping and the server."""
