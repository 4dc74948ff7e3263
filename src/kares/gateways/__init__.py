"""Clients of the outside services Kares talks to: SMS gateways, push providers
(APNs, FCM, Web Push) and sign-in providers (WeChat, Apple). They speak those
services' wire formats and know nothing of Kares' domains."""
