package otelx
