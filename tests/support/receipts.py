"""A short receipt as OCR prints it, for the tests that send one page to a real model."""

RECEIPT_TEXT = """SANYU STATIONERY SHOP
NO. 31G&33G, JALAN SETIA INDAH X,U13/X
40170 SETIA ALAM
CASH SALE   DATE: 19/03/2018
PAPER CLIP        1    2.90
TOTAL:                 2.90
CASH 10.00   CHANGE 7.10"""
