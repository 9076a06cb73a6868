"""Inquiries and deals: a buyer's thread and offers on a listing, the deal that closes it, the
public deal announcements and their statistics (disclosed amounts only, groups of three or more).
"""
