"""Webhook processing: claim landed rows, walk every entry × change × item, dispatch by field."""
