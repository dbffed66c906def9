// CUDABackend: see CUDABackend.swift
