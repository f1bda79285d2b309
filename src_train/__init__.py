"""Headless training recipes for the paper's benchmarks (PolypSegData, ISIC2018, BUSI, DSB2018, COVID19)."""
