"""Thin Discord adapters: parse options, defer, render messages, embeds and buttons."""
